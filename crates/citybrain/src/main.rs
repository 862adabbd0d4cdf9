//! The `citybrain` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    citybrain::main()
}
