//! The `citybrain` binary; everything lives in the library.

// jemalloc rather than glibc's allocator: the hot paths allocate page buffers, rows and an audit
// record per call, and glibc's malloc and free took about a tenth of a one-client lookup's
// server CPU. (mimalloc was as fast but held twice the resident memory after load.)
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    citybrain::main()
}
