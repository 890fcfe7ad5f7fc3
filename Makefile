# gtio: build, test and install. `make test` is the one test command.
SHELL := /bin/bash
.DEFAULT_GOAL := build

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
DATADIR    ?= $(PREFIX)/share
MANDIR     ?= $(DATADIR)/man
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR  ?= $(DATADIR)/zsh/site-functions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
DESTDIR    ?=
CARGO      ?= cargo
CC         := $(if $(filter default,$(origin CC)),cc,$(CC))
CXX        := $(if $(filter default,$(origin CXX)),c++,$(CXX))

VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
RELEASE := target/release
EXDIR   := target/examples
LIB     := $(RELEASE)/libgtio.so

EX_CFLAGS   := -std=c11 -Wall -Wextra -Wpedantic -Werror -O2 -g -Iinclude
EX_CXXFLAGS := -std=c++17 -Wall -Wextra -Wpedantic -Werror -O2 -g -Iinclude
EX_LDFLAGS  := -L$(RELEASE) -Wl,-rpath,$(CURDIR)/$(RELEASE) -lgtio -lpthread
EX_SRCS     := $(wildcard c_examples/*.c)
EX_BINS     := $(patsubst c_examples/%.c,$(EXDIR)/%,$(EX_SRCS))

VENV_PY  := .venv/bin/python
PY_TESTS := $(shell find tests/python \( -name 'test_*.py' -o -name '*_test.py' \) 2>/dev/null)

VALGRIND := valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 --suppressions=$(CURDIR)/tests/valgrind.supp

.PHONY: build header examples test demo install uninstall check-mem check-asan clean deps bench bench-smoke wheel

deps:
	@scripts/install-deps.sh

# The library (cdylib, staticlib, rlib) and the gtio binary. libgtio.so carries
# the soname libgtio.so.$(SOMAJOR) (set by build.rs); the symlink lets programs
# linked against the build tree find it.
build:
	@$(CARGO) build --release --quiet
	@ln -sfn libgtio.so $(RELEASE)/libgtio.so.$(SOMAJOR)

# Regenerate include/gtio.h (build.rs writes it when GTIO_UPDATE_HEADER is set).
header:
	@GTIO_UPDATE_HEADER=1 $(CARGO) build --release --quiet

# C examples against the public header; the header also as C++.
examples: build
	@mkdir -p $(EXDIR)
	@set -e; for src in $(EX_SRCS); do \
		bin=$(EXDIR)/$$(basename $$src .c); \
		$(CC) $(EX_CFLAGS) $$src -o $$bin $(EX_LDFLAGS) || { echo "examples: $$src failed to compile" >&2; exit 1; }; \
	done
	@$(CXX) $(EX_CXXFLAGS) -fsyntax-only c_examples/header_check.cpp \
		|| { echo "examples: include/gtio.h does not compile as C++ (c_examples/header_check.cpp)" >&2; exit 1; }
	@$(CXX) $(EX_CXXFLAGS) c_examples/header_check.cpp -o $(EXDIR)/header_check $(EX_LDFLAGS) \
		|| { echo "examples: c_examples/header_check.cpp does not link (missing symbol or extern \"C\"?)" >&2; exit 1; }
	@$(EXDIR)/header_check >/dev/null

test: deps
	@python3 scripts/module-graph.py >/dev/null || { echo "test: the library's modules import each other in a cycle (scripts/module-graph.py prints the graph)" >&2; exit 1; }
	@$(MAKE) --no-print-directory examples
	@$(CARGO) test --release --features gtio/test-hooks
ifneq ($(strip $(PY_TESTS)),)
	@GTIO_LIBRARY=$(CURDIR)/$(LIB) $(VENV_PY) -m pytest -q tests/python
endif
	@$(MAKE) --no-print-directory bench-smoke

# A short tour (scripts/demo.sh): a sample dataset served by `gtio serve`, a
# torrent of it made by `gtio create`, read by the C examples and the CLI,
# every byte checked; the server and temp files are cleaned up on any exit.
demo:
	@echo "demo: building gtio and the C examples (cargo build --release; a cold build takes a few minutes)"
	@$(MAKE) --no-print-directory examples
	@GTIO=$(CURDIR)/$(RELEASE)/gtio EXDIR=$(CURDIR)/$(EXDIR) scripts/demo.sh

# `gtio generate` writes these (cli/src/generate.rs); the list is what
# uninstall removes, and the install test fails if it falls behind.
GEN_DIR   := target/generated
MAN_PAGES := gtio gtio-ls gtio-cat gtio-get gtio-create gtio-serve gtio-mount

# gtio.pc's Libs carry -Wl,-rpath,$(LIBDIR), so a program built with
# `pkg-config --cflags --libs gtio` finds libgtio.so at run time without
# LD_LIBRARY_PATH; for a system prefix run as root, ldconfig also runs.
install: build
	@test -f include/gtio.h || { echo "install: include/gtio.h is missing (make header)" >&2; exit 1; }
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(BINDIR)
	install -m 755 $(RELEASE)/gtio $(DESTDIR)$(BINDIR)/gtio
	strip --strip-debug $(DESTDIR)$(BINDIR)/gtio
	install -m 644 include/gtio.h $(DESTDIR)$(INCLUDEDIR)/gtio.h
	install -m 755 $(RELEASE)/libgtio.so $(DESTDIR)$(LIBDIR)/libgtio.so.$(VERSION)
	strip --strip-debug $(DESTDIR)$(LIBDIR)/libgtio.so.$(VERSION)
	ln -sfn libgtio.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libgtio.so.$(SOMAJOR)
	ln -sfn libgtio.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libgtio.so
	install -m 644 $(RELEASE)/libgtio.a $(DESTDIR)$(LIBDIR)/libgtio.a
	strip --strip-debug $(DESTDIR)$(LIBDIR)/libgtio.a
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    gtio.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/gtio.pc
	@# man pages and completions, generated from the clap definitions by the binary being installed
	@rm -rf $(GEN_DIR) && $(RELEASE)/gtio -q generate $(GEN_DIR)
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 644 $(GEN_DIR)/man1/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(GEN_DIR)/completions/gtio.bash $(DESTDIR)$(BASHCOMPDIR)/gtio
	install -m 644 $(GEN_DIR)/completions/_gtio $(DESTDIR)$(ZSHCOMPDIR)/_gtio
	install -m 644 $(GEN_DIR)/completions/gtio.fish $(DESTDIR)$(FISHCOMPDIR)/gtio.fish
	@if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null && [ "$$(id -u)" = 0 ]; then ldconfig; fi

# Removes exactly what install put there (same PREFIX/DESTDIR), nothing else.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/gtio $(DESTDIR)$(INCLUDEDIR)/gtio.h \
	      $(DESTDIR)$(LIBDIR)/libgtio.so $(DESTDIR)$(LIBDIR)/libgtio.so.$(SOMAJOR) \
	      $(DESTDIR)$(LIBDIR)/libgtio.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libgtio.a \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/gtio.pc \
	      $(DESTDIR)$(LIBDIR)/htslib/hfile_gtio.so \
	      $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(addsuffix .1,$(MAN_PAGES))) \
	      $(DESTDIR)$(BASHCOMPDIR)/gtio $(DESTDIR)$(ZSHCOMPDIR)/_gtio $(DESTDIR)$(FISHCOMPDIR)/gtio.fish
	-rmdir $(DESTDIR)$(LIBDIR)/htslib 2>/dev/null
	@if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null && [ "$$(id -u)" = 0 ]; then ldconfig; fi

# --- wheel (issue 16) --------------------------------------------------------
# A wheel of the Python package with libgtio inside (gtio/_libgtio.abi3.so),
# built by setuptools-rust (python/setup.py) into target/wheels. It reuses
# this build tree (CARGO_TARGET_DIR), so after `make build` it only packs.
# Offline when the Python used has setuptools-rust (the test venv does);
# otherwise pip fetches the build backend from PyPI (build isolation).
WHEEL_PY  ?= $(if $(wildcard $(VENV_PY)),$(VENV_PY),python3)
WHEEL_DIR := target/wheels

wheel: build
	@mkdir -p $(WHEEL_DIR) && rm -rf python/build python/gtio.egg-info
	@iso=$$($(WHEEL_PY) -c 'import setuptools_rust, wheel' 2>/dev/null && echo --no-build-isolation); \
	CARGO_TARGET_DIR=$(CURDIR)/target $(WHEEL_PY) -m pip wheel -q --no-deps --disable-pip-version-check \
		$$iso -w $(WHEEL_DIR) ./python
	@rm -rf python/build python/gtio.egg-info
	@ls -1 $(WHEEL_DIR)/gtio-$(VERSION)-*.whl
# --- end wheel ----------------------------------------------------------------

# The C examples under valgrind against nginx (0 definitely lost, no memory errors).
check-mem: examples
	@GTIO_VALGRIND="$(VALGRIND)" $(CARGO) test --release --test c_examples -- --test-threads=1

# The C examples built with AddressSanitizer + UndefinedBehaviorSanitizer (and
# LeakSanitizer: ASAN_OPTIONS=detect_leaks=1) into $(ASAN_EXDIR), run against
# nginx by the same tests (tests/c_examples.rs, GTIO_EXAMPLES_DIR). Only the C
# side is instrumented: libgtio.so is the ordinary release build (stable Rust
# cannot build it with -Zsanitizer), so ASan sees the library's heap through
# its malloc interposition and checks the examples' own memory accesses, but
# not the library's. LeakSanitizer reports nothing from the library's own
# allocations (its long-lived state is reachable from statics), so there is no
# suppressions file: any leak report fails the run.
ASAN_EXDIR  := target/examples-asan
ASAN_FLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
ASAN_ENV    := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1 \
               UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

check-asan: build
	@mkdir -p $(ASAN_EXDIR)
	@set -e; for src in $(EX_SRCS); do \
		bin=$(ASAN_EXDIR)/$$(basename $$src .c); \
		$(CC) $(EX_CFLAGS) $(ASAN_FLAGS) $$src -o $$bin $(EX_LDFLAGS) || { echo "check-asan: $$src failed to compile" >&2; exit 1; }; \
	done
	@$(CXX) $(EX_CXXFLAGS) $(ASAN_FLAGS) c_examples/header_check.cpp -o $(ASAN_EXDIR)/header_check $(EX_LDFLAGS) \
		|| { echo "check-asan: c_examples/header_check.cpp failed to compile" >&2; exit 1; }
	@$(ASAN_ENV) GTIO_EXAMPLES_DIR=$(CURDIR)/$(ASAN_EXDIR) $(CARGO) test --release --test c_examples

# Benchmarks (bench/): gtio vs curl, aria2c and fsspec against nginx on loopback,
# one run, a table of figures and ratios; bench/results.md records it.
# bench-smoke: the same harness with tiny sizes (< 30 s); fails only when the
# harness breaks or gtio returns wrong bytes. Sizes: see bench/run.py.
BENCH_BIN := target/bench/gtio_bench
BENCH_PY  := $(if $(wildcard $(VENV_PY)),$(VENV_PY),python3)

$(BENCH_BIN): bench/gtio_bench.c include/gtio.h $(LIB)
	@mkdir -p $(dir $@)
	@$(CC) -std=c11 -Wall -Wextra -O2 -Iinclude $< -o $@ $(EX_LDFLAGS)

bench: build
	@$(MAKE) --no-print-directory $(BENCH_BIN)
	@$(BENCH_PY) bench/run.py

bench-smoke: build
	@$(MAKE) --no-print-directory $(BENCH_BIN)
	@$(BENCH_PY) bench/run.py --smoke

clean:
	$(CARGO) clean
	rm -rf $(EXDIR)

# The htslib plugin (htslib/README.md): hfile_gtio.so against include/gtio.h and
# Debian's libhts-dev (only hfile.h is used; the plugin interface is declared
# in the source). rpath $ORIGIN/.. finds libgtio.so both in the build tree and
# in $(LIBDIR). Use: HTS_PATH=$(CURDIR)/target/release/htslib: samtools ...
HTS_PLUGIN := $(RELEASE)/htslib/hfile_gtio.so
.PHONY: htslib install-htslib
htslib: build
	@test -f /usr/include/htslib/hfile.h || { echo "htslib: needs libhts-dev (make deps)" >&2; exit 1; }
	@mkdir -p $(RELEASE)/htslib
	@$(CC) -std=c11 -Wall -Wextra -Werror -O2 -g -fPIC -shared -Iinclude \
		htslib/hfile_gtio.c -o $(HTS_PLUGIN) -L$(RELEASE) -Wl,-rpath,'$$ORIGIN/..' -lgtio -lpthread
install: install-htslib
install-htslib: htslib
	install -d $(DESTDIR)$(LIBDIR)/htslib
	install -m 755 $(HTS_PLUGIN) $(DESTDIR)$(LIBDIR)/htslib/hfile_gtio.so
