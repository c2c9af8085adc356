//! `cargo xtask test`: the whole test suite, set-up included.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

fn step(title: &str, program: &str, args: &[&str]) -> Result<()> {
    println!("\n== {title}: {program} {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!("{title} failed ({status})");
    }
    println!("== {title}: ok in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Seeded renders must be identical, byte for byte.
fn renders_are_reproducible() -> Result<()> {
    println!("\n== reproducible renders");
    let render = |out: &str| -> Result<(Vec<u8>, Vec<u8>)> {
        let args = [
            "render", "--bars", "4", "--seed", "7", "--preset", "balanced", "--out", out,
        ];
        let status = Command::new(std::env::current_exe()?).args(args).status()?;
        if !status.success() {
            bail!("render failed");
        }
        Ok((
            std::fs::read(format!("{out}/wren.wav"))?,
            std::fs::read(format!("{out}/wren.mid"))?,
        ))
    };
    let first = render("target/render-check-a")?;
    let second = render("target/render-check-b")?;
    if first != second {
        bail!("two renders with the same seed differ");
    }
    println!("== reproducible renders: ok");
    Ok(())
}

/// Each fuzz target for a bounded time, starting from the corpus kept in
/// `fuzz/corpus`; what it finds new goes to a scratch folder, so the run
/// changes nothing in the repository. A crash fails the step.
fn fuzz(seconds: u32) -> Result<()> {
    let root = std::env::current_dir()?;
    for target in ["model_loader", "state_loader"] {
        let scratch = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&scratch)?;
        let corpus = root.join("fuzz/corpus").join(target);
        let (scratch, corpus) = (scratch.display().to_string(), corpus.display().to_string());
        let time = format!("-max_total_time={seconds}");
        step(
            &format!("fuzz {target}"),
            "cargo",
            &[
                "fuzz",
                "run",
                "--sanitizer",
                "none",
                target,
                &scratch,
                &corpus,
                "--",
                &time,
                "-max_len=8192",
            ],
        )?;
    }
    Ok(())
}

/// Runs every check in order and stops at the first failure.
pub fn run() -> Result<()> {
    let started = Instant::now();
    // The set-up installs the soundfont, so tests that need it must not skip.
    std::env::set_var("WREN_REQUIRE_SOUNDFONT", "1");
    step("set-up", "scripts/setup.sh", &[])?;
    step("format", "cargo", &["fmt", "--all", "--check"])?;
    step(
        "clippy",
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--features",
            "wren/standalone",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // With the standalone feature, this build also makes
    // target/release/wren-standalone, and the real-host tests (run.sh) use
    // the same packages and features: one build of the dependencies, not
    // one per command.
    step(
        "unit and integration tests",
        "cargo",
        &[
            "test",
            "--workspace",
            "--release",
            "--features",
            "wren/standalone",
        ],
    )?;
    fuzz(30)?;
    renders_are_reproducible()?;
    step("real hosts", "tests/hosts/run.sh", &[])?;
    println!(
        "\nall checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
