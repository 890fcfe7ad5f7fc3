// header_check: include/gtio.h must compile as C++ (-std=c++17 -Wall -Wextra
// -Wpedantic -Werror) and declare exactly the C ABI of DESIGN.md: every type,
// field and function below is checked for its exact type and signature.
// The Makefile compiles it with -fsyntax-only, then links it against libgtio.so
// (which catches a missing extern "C"); running it prints the library version.
#include <gtio.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <type_traits>

#define SAME(a, b) static_assert(std::is_same<a, b>::value, #a " is not " #b)
#define FIELD(T, f, type) SAME(decltype(T::f), type)

// constants
static_assert(GTIO_NAME_MAX == 4096, "GTIO_NAME_MAX");
static_assert(GTIO_READ_BACKGROUND == 1u, "GTIO_READ_BACKGROUND");

// types and fields
FIELD(GTIO_Error, code, int32_t);
FIELD(GTIO_Error, http_status, int32_t);
FIELD(GTIO_Error, message, char[512]);

FIELD(GTIO_FileInfo, name, char *);
FIELD(GTIO_FileInfo, offset, uint64_t);
FIELD(GTIO_FileInfo, size, uint64_t);

FIELD(GTIO_Dirent, name, char[GTIO_NAME_MAX]);
FIELD(GTIO_Dirent, offset, uint64_t);
FIELD(GTIO_Dirent, size, uint64_t);

FIELD(GTIO_Config, cache_bytes, uint64_t);
FIELD(GTIO_Config, block_size, uint32_t);
FIELD(GTIO_Config, workers, uint32_t);
FIELD(GTIO_Config, max_conns_per_host, uint32_t);
FIELD(GTIO_Config, readahead_max_bytes, uint64_t);
FIELD(GTIO_Config, retries, uint32_t);
FIELD(GTIO_Config, timeout_ms, uint32_t);
FIELD(GTIO_Config, ring_entries, uint32_t);
FIELD(GTIO_Config, poller_thread, int32_t);
FIELD(GTIO_Config, ca_bundle, const char *);

FIELD(gtio_usercb_t, cb_func, void (*)(gtio_usercb_t *));
FIELD(gtio_usercb_t, cb_data, void *);
FIELD(gtio_usercb_t, ret, int64_t);
SAME(gtio_usercb_t, struct gtio_usercb);

FIELD(gtio_usercomp_t, ucp_fun, void (*)(int64_t, void *));
FIELD(gtio_usercomp_t, ucp_res, int64_t);
FIELD(gtio_usercomp_t, ucp_arg, void *);
SAME(gtio_usercomp_t, struct gtio_usercomp);

// field order (the layout C callers and ctypes rely on)
static_assert(offsetof(GTIO_Error, code) < offsetof(GTIO_Error, http_status) &&
                  offsetof(GTIO_Error, http_status) < offsetof(GTIO_Error, message),
              "GTIO_Error field order");
static_assert(offsetof(GTIO_FileInfo, name) == 0 && offsetof(GTIO_FileInfo, offset) == 8 &&
                  offsetof(GTIO_FileInfo, size) == 16,
              "GTIO_FileInfo layout");
static_assert(offsetof(GTIO_Dirent, name) == 0 && offsetof(GTIO_Dirent, offset) == GTIO_NAME_MAX,
              "GTIO_Dirent layout");
static_assert(offsetof(GTIO_Config, cache_bytes) < offsetof(GTIO_Config, block_size) &&
                  offsetof(GTIO_Config, block_size) < offsetof(GTIO_Config, workers) &&
                  offsetof(GTIO_Config, workers) < offsetof(GTIO_Config, max_conns_per_host) &&
                  offsetof(GTIO_Config, max_conns_per_host) < offsetof(GTIO_Config, readahead_max_bytes) &&
                  offsetof(GTIO_Config, readahead_max_bytes) < offsetof(GTIO_Config, retries) &&
                  offsetof(GTIO_Config, retries) < offsetof(GTIO_Config, timeout_ms) &&
                  offsetof(GTIO_Config, timeout_ms) < offsetof(GTIO_Config, ring_entries) &&
                  offsetof(GTIO_Config, ring_entries) < offsetof(GTIO_Config, poller_thread) &&
                  offsetof(GTIO_Config, poller_thread) < offsetof(GTIO_Config, ca_bundle),
              "GTIO_Config field order");
static_assert(offsetof(gtio_usercb_t, cb_func) == 0 && offsetof(gtio_usercb_t, cb_data) == 8 &&
                  offsetof(gtio_usercb_t, ret) == 16,
              "gtio_usercb_t layout");
static_assert(offsetof(gtio_usercomp_t, ucp_fun) == 0 && offsetof(gtio_usercomp_t, ucp_res) == 8 &&
                  offsetof(gtio_usercomp_t, ucp_arg) == 16,
              "gtio_usercomp_t layout");

// opaque handles: declared, never defined
static_assert(sizeof(GTIO *) == sizeof(void *), "GTIO");
static_assert(sizeof(GTIO_Dir *) == sizeof(void *), "GTIO_Dir");

// every function, with its exact signature
#define FN(name, type) SAME(decltype(&name), type)
FN(gtio_config_default, void (*)(GTIO_Config *));
FN(gtio_lib_init, int (*)(const GTIO_Config *, GTIO_Error *));
FN(gtio_lib_fini, int (*)(GTIO_Error *));
FN(gtio_version, const char *(*)(void));
FN(gtio_open_gto, GTIO *(*)(const void *, size_t, const char *, GTIO_Error *));
FN(gtio_open_uri, GTIO *(*)(const char *, const char *, GTIO_Error *));
FN(gtio_close, int (*)(GTIO *, GTIO_Error *));
FN(gtio_read, int64_t (*)(GTIO *, void *, size_t, GTIO_Error *));
FN(gtio_pread, int64_t (*)(GTIO *, void *, size_t, uint64_t, GTIO_Error *));
FN(gtio_lseek, int64_t (*)(GTIO *, int64_t, int, GTIO_Error *));
FN(gtio_size, int64_t (*)(GTIO *, GTIO_Error *));
FN(gtio_get_file_list, int64_t (*)(GTIO *, GTIO_FileInfo **, GTIO_Error *));
FN(gtio_free_file_list, void (*)(GTIO_FileInfo *, int64_t));
FN(gtio_opendir, GTIO_Dir *(*)(GTIO *, GTIO_Error *));
FN(gtio_readdir, int (*)(GTIO_Dir *, GTIO_Dirent *, GTIO_Error *));
FN(gtio_closedir, int (*)(GTIO_Dir *, GTIO_Error *));
FN(gtio_pread_async, int (*)(GTIO *, void *, size_t, uint64_t, uint32_t, gtio_usercb_t *, GTIO_Error *));
FN(gtio_poll, int (*)(gtio_usercomp_t *, int));
FN(gtio_poll_fd, int (*)(void));
FN(gtio_cancel, int (*)(GTIO *, gtio_usercb_t *, GTIO_Error *));
FN(gtio_prefetch, int (*)(GTIO *, uint64_t, uint64_t, GTIO_Error *));

int main()
{
    // Take every address so that linking checks every symbol (C linkage).
    using fn = void (*)(void); // the exempt generic function pointer type
    const fn syms[] = {
        reinterpret_cast<fn>(&gtio_config_default),
        reinterpret_cast<fn>(&gtio_lib_init),
        reinterpret_cast<fn>(&gtio_lib_fini),
        reinterpret_cast<fn>(&gtio_version),
        reinterpret_cast<fn>(&gtio_open_gto),
        reinterpret_cast<fn>(&gtio_open_uri),
        reinterpret_cast<fn>(&gtio_close),
        reinterpret_cast<fn>(&gtio_read),
        reinterpret_cast<fn>(&gtio_pread),
        reinterpret_cast<fn>(&gtio_lseek),
        reinterpret_cast<fn>(&gtio_size),
        reinterpret_cast<fn>(&gtio_get_file_list),
        reinterpret_cast<fn>(&gtio_free_file_list),
        reinterpret_cast<fn>(&gtio_opendir),
        reinterpret_cast<fn>(&gtio_readdir),
        reinterpret_cast<fn>(&gtio_closedir),
        reinterpret_cast<fn>(&gtio_pread_async),
        reinterpret_cast<fn>(&gtio_poll),
        reinterpret_cast<fn>(&gtio_poll_fd),
        reinterpret_cast<fn>(&gtio_cancel),
        reinterpret_cast<fn>(&gtio_prefetch),
    };
    for (fn p : syms) {
        if (!p) {
            std::fprintf(stderr, "header_check: FAIL: a symbol resolved to NULL\n");
            return 1;
        }
    }
    GTIO_Config cfg;
    gtio_config_default(&cfg);
    const char *v = gtio_version();
    std::printf("header_check: OK: gtio %s, %zu functions, C++ %ld\n", v ? v : "(null)",
                sizeof syms / sizeof syms[0], static_cast<long>(__cplusplus));
    return 0;
}
