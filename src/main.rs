//! The `hypernar` command: parse arguments, set up logging, run a command.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before anything is created: data directories hold feed secrets and
    // audience keys (hypernar_feed::private).
    hypernar_feed::private::owner_only_umask();
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(cli::run(args.command, args.verbose)) {
        Ok(code) => code,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {}", cli::error_chain(&e));
            }
            std::process::ExitCode::from(1)
        }
    }
}
