//! The dogs command line: see [`dogs_cli`].

fn main() -> std::process::ExitCode {
    dogs_cli::main()
}
