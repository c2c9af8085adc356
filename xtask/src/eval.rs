//! `cargo xtask eval`: how well every shipped variant and the n-gram
//! baseline predict the melodies of some MIDI files.

use std::path::PathBuf;
use wren::engine::models::Role;

use anyhow::{Context, Result};
use serde::Serialize;
use wren::melody::dataset::{read_dataset, Split};
use wren::melody::ngram::NGram;
use wren::melody::smf::read_melody;
use wren::melody::tokens::Melody;
use wren_pipeline::batches::transposed_copies;
use wren_pipeline::compress::kernel_nll;

/// Files to evaluate on.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Standard MIDI files; each one's top line is scored.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Score {
    model: String,
    nll_per_step: f64,
    accuracy: f64,
    steps: usize,
}

/// Runs the command.
pub fn run(args: &EvalArgs) -> Result<()> {
    let mut melodies = Vec::new();
    for path in &args.files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        melodies.push(read_melody(&bytes).with_context(|| format!("reading {}", path.display()))?);
    }
    let mut scores = Vec::new();
    for &(name, bytes) in wren::engine::models::EMBEDDED_MODELS {
        if Role::of(name) != Role::Melody {
            continue;
        }
        let model = wren::engine::models::load_model(name, bytes)?;
        let refs: Vec<&Melody> = melodies.iter().collect();
        let (nll, accuracy) = kernel_nll(&model.net, &refs);
        let steps = melodies.iter().map(|m| m.tokens.len()).sum();
        scores.push(Score {
            model: name.into(),
            nll_per_step: nll,
            accuracy,
            steps,
        });
    }
    let manifest = wren::engine::models::embedded_manifest();
    let baseline = manifest.baselines.get("ngram");
    let order = baseline
        .and_then(|b| b.get("order"))
        .copied()
        .unwrap_or(5.0) as usize;
    let with_position = baseline
        .and_then(|b| b.get("with_position"))
        .copied()
        .unwrap_or(1.0)
        > 0.5;
    let tunes = read_dataset(std::path::Path::new("models/data/melodies.tsv.gz"))?;
    let train_split = tunes.iter().filter(|t| t.split == Split::Train);
    let train = transposed_copies(train_split.map(|t| &t.melody));
    let ngram = NGram::train(order, with_position, train.iter());
    let (nll, accuracy) = ngram.evaluate(melodies.iter());
    let steps = melodies.iter().map(|m| m.tokens.len()).sum();
    scores.push(Score {
        model: format!("ngram-{order}"),
        nll_per_step: nll,
        accuracy,
        steps,
    });

    if args.json {
        println!("{}", serde_json::to_string_pretty(&scores)?);
    } else {
        println!(
            "{:<24} {:>12} {:>9} {:>7}",
            "model", "NLL/step", "accuracy", "steps"
        );
        for s in &scores {
            println!(
                "{:<24} {:>12.4} {:>9.4} {:>7}",
                s.model, s.nll_per_step, s.accuracy, s.steps
            );
        }
    }
    Ok(())
}
