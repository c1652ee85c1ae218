//! The `deferscope` command.
use std::process::ExitCode;

use clap::Parser as _;
use deferscope::{cli::Options, session};

fn main() -> ExitCode {
    // A bug must not end in a backtrace on the operator's terminal: one line,
    // and the kernel detaches the probes when the process exits.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("deferscope: internal error{location}: {}", panic_message(info));
    }));
    let options = Options::parse();
    let mut logger = env_logger::Builder::new();
    logger.filter_level(if options.verbose { log::LevelFilter::Debug } else { log::LevelFilter::Warn });
    match &options.log_file {
        Some(path) => match std::fs::File::options().create(true).append(true).open(path) {
            Ok(file) => {
                logger.target(env_logger::Target::Pipe(Box::new(file)));
            }
            Err(e) => {
                eprintln!("deferscope: cannot open the log file {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        // The dashboard owns the terminal: log lines would tear it.
        None if session::uses_tui(&options) => {
            logger.filter_level(log::LevelFilter::Off);
        }
        None => {}
    }
    logger.format_timestamp(if options.log_file.is_some() {
        Some(env_logger::TimestampPrecision::Millis)
    } else {
        None
    });
    logger.init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("deferscope: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(session::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deferscope: {e}");
            ExitCode::FAILURE
        }
    }
}

fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}
