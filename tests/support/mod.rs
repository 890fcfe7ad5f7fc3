pub mod gtio_bin;
pub mod nginx;
