//! `cargo xtask`: Wren's developer commands.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Wren's developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train, distill, quantize, evaluate and export the melody models.
    TrainMelody {
        /// Run the whole pipeline on a sliver of the data with tiny networks.
        #[arg(long)]
        tiny: bool,
        /// Output folder (default: `models`, or a temporary folder with --tiny).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let command_line = format!(
        "cargo xtask {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    match cli.command {
        Command::TrainMelody { tiny, out } => {
            use wren_pipeline::melody::{run, PipelineConfig};
            let config = if tiny {
                let out = out.unwrap_or_else(|| std::env::temp_dir().join("wren-tiny-pipeline"));
                PipelineConfig::tiny(command_line, out)
            } else {
                let mut config = PipelineConfig::full(command_line);
                if let Some(out) = out {
                    config.work_dir = out.join("work");
                    config.out_dir = out;
                }
                config
            };
            run(&config)
        }
    }
}
