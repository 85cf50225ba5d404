//! `onecli`: runs agents behind the gateway and runs the servers.

mod commands;
mod logging;

use clap::Parser;

fn main() {
    let cli = commands::Cli::parse();
    logging::init(cli.log_format, cli.verbose);
    let code = match commands::run(cli) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("onecli: {}", error.message);
            error.exit_code
        }
    };
    std::process::exit(code);
}
