//! `cargo xtask report`: every model the manifest lists, its size, its
//! held-out quality and the cost of one step under three runtimes (Wren's
//! kernel, tract, ONNX Runtime) measured in the same run on the same file;
//! then Wren's int8 against ONNX Runtime's dynamic quantization of each f32
//! model. Writes `report.md` and the quality-against-cost plots.
//!
//! All runtimes read the same example sequence from a zero state and feed
//! their own next state back, as the plugin does; each times a warm-up pass
//! first. ONNX Runtime runs in `scripts/ort_step.py` under `.venv`; without
//! it its columns say `n/a` and the report is still written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use wren::engine::models::Role;
use wren::model::kernel::{GruKernel, Isa};
use wren::model::manifest::{Manifest, ModelEntry};
use wren::model::onnx::{import, TractStep};
use wren::model::GruNet;
use wren_pipeline::progress::Progress;

/// Options of the report.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Steps timed per model and runtime.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Folder for report.md and the plots.
    #[arg(long, default_value = "docs/compression")]
    pub out: PathBuf,
    /// The manifest listing the models (their files sit beside it).
    #[arg(long, default_value = "models/manifest.json")]
    pub manifest: PathBuf,
}

/// Untimed steps each runtime runs before the timed pass.
const WARMUP: usize = 100;
const PYTHON: &str = ".venv/bin/python";
const ORT_SCRIPT: &str = "scripts/ort_step.py";
const PLOT_SCRIPT: &str = "scripts/plot_compression.py";
/// Inputs, reference outputs and the runtimes' answers go here.
const WORK: &str = "target/report";

/// Microseconds per step.
#[derive(Clone, Copy, Debug)]
struct Timing {
    median: f64,
    p99: f64,
    p999: f64,
}

impl Timing {
    fn of(times_us: &[f64]) -> Timing {
        let cost = wren::engine::cost::Cost::of(times_us);
        Timing {
            median: cost.median_us,
            p99: cost.p99_us,
            p999: cost.p999_us,
        }
    }

    fn from_json(v: &Value) -> Result<Timing, String> {
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Err(e.to_string());
        }
        let field = |k: &str| v.get(k).and_then(Value::as_f64).ok_or(format!("no {k}"));
        Ok(Timing {
            median: field("median_us")?,
            p99: field("p99_us")?,
            p999: field("p999_us")?,
        })
    }

    fn cell(&self) -> String {
        format!("{:.1} / {:.1} / {:.1}", self.median, self.p99, self.p999)
    }
}

/// One runtime's timing and how far its outputs were from Wren's f32 kernel.
#[derive(Clone, Debug)]
struct Measured {
    timing: Timing,
    max_abs_diff: Option<f64>,
}

/// Wren's int8 of an f32 model beside ONNX Runtime's dynamic quantization.
struct Int8Comparison {
    wren: Measured,
    ort: Result<Measured, String>,
}

/// Everything measured of one loadable model.
struct Measures {
    parameters: usize,
    weight_bytes: usize,
    file_bytes: usize,
    gzip_bytes: Result<usize, String>,
    sparsity: f64,
    rank: Option<usize>,
    bits: &'static str,
    wren: Measured,
    tract: Result<Measured, String>,
    ort: Result<Measured, String>,
    int8: Option<Int8Comparison>,
}

/// One manifest entry: where it belongs and what came of measuring it.
struct Row {
    entry: ModelEntry,
    network: String,
    variant: String,
    teacher: bool,
    outcome: Result<Measures, String>,
}

/// Runs the command: measures, writes the report and plots, prints a summary.
pub fn run(args: &ReportArgs) -> Result<()> {
    anyhow::ensure!(args.steps > 0, "--steps must be at least 1");
    let started = Instant::now();
    let command = format!(
        "cargo xtask {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let text = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("reading {}", args.manifest.display()))?;
    let manifest = Manifest::from_json(&text)
        .with_context(|| format!("parsing {}", args.manifest.display()))?;
    let models_dir = args.manifest.parent().unwrap_or(Path::new("."));
    let work = PathBuf::from(WORK);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {WORK}"))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let load_before = load_average();
    let ort = Ort::probe(&work);
    if let Err(e) = &ort.version {
        eprintln!("report: ONNX Runtime is not available, its columns will say n/a: {e}");
    }
    let progress = Progress::new("report", manifest.models.len() as u64);
    let mut rows = Vec::new();
    for (i, entry) in manifest.models.iter().enumerate() {
        progress.set(i as u64, &entry.name);
        let outcome = measure_guarded(entry, models_dir, &ort, args.steps);
        if let Err(e) = &outcome {
            progress.note(&format!("{}: {e}", entry.name));
        }
        rows.push(row(entry, &manifest, outcome));
    }
    progress.set(manifest.models.len() as u64, "ONNX Runtime call overhead");
    let overhead = ort_overhead(&ort, &rows, args.steps);
    progress.finish();

    let context = RunFacts {
        command,
        steps: args.steps,
        load_before,
        load_after: load_average(),
        ort_version: ort.version.clone(),
        overhead,
        revision: revision(),
        stalls: stalls(&rows),
    };
    let plots = plot(&rows, &manifest, &args.out, &work);
    if let Err(e) = &plots {
        eprintln!("report: no plots: {e}");
    }
    let report = markdown(&rows, &manifest, &context, plots.as_deref().unwrap_or(&[]));
    let path = args.out.join("report.md");
    std::fs::write(&path, report).with_context(|| format!("writing {}", path.display()))?;
    print_summary(&rows);
    println!(
        "wrote {} in {:.0} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Measures one model; a panic in any runtime becomes the row's error.
fn measure_guarded(
    entry: &ModelEntry,
    dir: &Path,
    ort: &Ort,
    steps: usize,
) -> Result<Measures, String> {
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        measure(entry, dir, ort, steps)
    }));
    match attempt {
        Ok(result) => result.map_err(|e| format!("{e:#}")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())),
    }
}

fn measure(entry: &ModelEntry, dir: &Path, ort: &Ort, steps: usize) -> Result<Measures> {
    let path = dir.join(&entry.file);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let net = import(&bytes).context("importing")?.net;
    let role = Role::of(&entry.name);
    let shape = net.shape();
    let (input, output) = role.widths();
    anyhow::ensure!(
        (shape.input, shape.output) == (input, output),
        "a {role:?} model reads {input} and writes {output}, this one {} and {}",
        shape.input,
        shape.output
    );
    let xs = example_inputs(role, shape.input, steps);
    let (wren_timing, reference) = kernel_pass(&net, &xs);
    let wren = Measured {
        timing: wren_timing,
        max_abs_diff: None,
    };
    let tract = tract_pass(&bytes, &net, &xs, &reference).map_err(|e| format!("{e:#}"));
    let bits = bits(&net);
    let int8_of_f32 = bits == "32";
    let ort_answer = ort.step(&entry.name, &path, &xs, &reference, &net, int8_of_f32);
    let ort_f32 = ort_answer.clone().and_then(|v| measured(&v["model"]));
    let int8 = int8_of_f32.then(|| {
        let (timing, outputs) = kernel_pass(&net.quantized(), &xs);
        let wren = Measured {
            timing,
            max_abs_diff: Some(max_abs_diff(&outputs, &reference)),
        };
        let ort = ort_answer.and_then(|v| measured(&v["dynamic_int8"]));
        Int8Comparison { wren, ort }
    });
    Ok(Measures {
        parameters: net.parameters(),
        weight_bytes: net.bytes(),
        file_bytes: bytes.len(),
        gzip_bytes: gzip_bytes(&path),
        sparsity: net.sparsity(),
        rank: net.rank(),
        bits,
        wren,
        tract,
        ort: ort_f32,
        int8,
    })
}

/// `8`, `32`, or mixed when only some weights are int8.
fn bits(net: &GruNet) -> &'static str {
    if net.is_int8() {
        "8"
    } else if net.matrices().any(|m| m.bytes() < m.stored_zeros().0 * 4) {
        "mixed 8/32"
    } else {
        "32"
    }
}

/// The role's example sequence, `steps` inputs back to back.
fn example_inputs(role: Role, width: usize, steps: usize) -> Vec<f32> {
    let mut xs = vec![0.0; steps * width];
    for (i, x) in xs.chunks_exact_mut(width).enumerate() {
        role.write_example(i, x);
    }
    xs
}

/// Times Wren's kernel over the sequence; returns also `y` and the next
/// state of every step, back to back (the reference for the others).
fn kernel_pass(net: &GruNet, xs: &[f32]) -> (Timing, Vec<f32>) {
    let shape = net.shape();
    let mut kernel = GruKernel::new(net);
    let mut state = vec![0.0; shape.state()];
    let mut y = vec![0.0; shape.output];
    for x in xs.chunks_exact(shape.input).take(WARMUP) {
        kernel.step(x, &mut state, &mut y);
    }
    state.fill(0.0);
    let steps = xs.len() / shape.input;
    let mut outputs = Vec::with_capacity(steps * (shape.output + shape.state()));
    let mut times = Vec::with_capacity(steps);
    for x in xs.chunks_exact(shape.input) {
        let t = Instant::now();
        kernel.step(x, &mut state, &mut y);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        outputs.extend_from_slice(&y);
        outputs.extend_from_slice(&state);
    }
    (Timing::of(&times), outputs)
}

/// Times tract on the same file and sequence.
fn tract_pass(bytes: &[u8], net: &GruNet, xs: &[f32], reference: &[f32]) -> Result<Measured> {
    let shape = net.shape();
    let tract = TractStep::load(bytes, shape)?;
    let mut state = vec![0.0; shape.state()];
    for x in xs.chunks_exact(shape.input).take(WARMUP) {
        state = tract.run(x, &state)?.1;
    }
    state.fill(0.0);
    let mut outputs = Vec::with_capacity(reference.len());
    let mut times = Vec::with_capacity(xs.len() / shape.input);
    for x in xs.chunks_exact(shape.input) {
        let t = Instant::now();
        let (y, next) = tract.run(x, &state)?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        outputs.extend_from_slice(&y);
        outputs.extend_from_slice(&next);
        state = next;
    }
    Ok(Measured {
        timing: Timing::of(&times),
        max_abs_diff: Some(max_abs_diff(&outputs, reference)),
    })
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::NAN;
    }
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max)
}

fn measured(v: &Value) -> Result<Measured, String> {
    if v.is_null() {
        return Err("not measured".into());
    }
    Ok(Measured {
        timing: Timing::from_json(v)?,
        max_abs_diff: v.get("max_abs_diff").and_then(Value::as_f64),
    })
}

/// Size of the file compressed by `gzip -9` (how well the weights compress).
fn gzip_bytes(path: &Path) -> Result<usize, String> {
    let out = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .arg(path)
        .output()
        .map_err(|e| format!("gzip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gzip: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout.len())
}

/// ONNX Runtime through `scripts/ort_step.py`, if `.venv` has it.
struct Ort {
    version: Result<String, String>,
    work: PathBuf,
}

impl Ort {
    fn probe(work: &Path) -> Ort {
        let mut ort = Ort {
            version: Err(String::new()),
            work: work.to_path_buf(),
        };
        ort.version = if !Path::new(PYTHON).exists() {
            Err(format!("{PYTHON} is missing (scripts/setup.sh creates it)"))
        } else {
            ort.call(&["version"], "version").and_then(|v| {
                match (v["onnxruntime"].as_str(), v["onnx"].as_bool()) {
                    (Some(version), Some(true)) => Ok(version.to_string()),
                    (Some(_), _) => Err("the onnx package is missing".into()),
                    _ => Err(format!("unexpected answer {v}")),
                }
            })
        };
        ort
    }

    /// Runs the script with `args`; its JSON answer lands in `WORK/{name}.json`.
    fn call(&self, args: &[&str], name: &str) -> Result<Value, String> {
        let json = self.work.join(format!("{name}.json"));
        let _ = std::fs::remove_file(&json);
        let out = Command::new(PYTHON)
            .arg(ORT_SCRIPT)
            .args(args)
            .arg("--json")
            .arg(&json)
            .output()
            .map_err(|e| format!("running {PYTHON}: {e}"))?;
        let answer = std::fs::read_to_string(&json)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        match answer {
            Some(v) if v.get("error").is_some() => Err(v["error"].as_str().unwrap_or("?").into()),
            Some(v) if out.status.success() => Ok(v),
            _ => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().last().unwrap_or("no output");
                Err(format!("{ORT_SCRIPT} failed ({}): {last}", out.status))
            }
        }
    }

    /// Times the model (and with `quantize`, its dynamic int8) on `xs`,
    /// comparing outputs with the kernel's `reference`.
    fn step(
        &self,
        name: &str,
        model: &Path,
        xs: &[f32],
        reference: &[f32],
        net: &GruNet,
        quantize: bool,
    ) -> Result<Value, String> {
        if let Err(e) = &self.version {
            return Err(e.clone());
        }
        let shape = net.shape();
        let inputs = self.work.join(format!("{name}.inputs.f32"));
        let kernel = self.work.join(format!("{name}.kernel.f32"));
        write_f32(&inputs, xs).map_err(|e| format!("{e:#}"))?;
        write_f32(&kernel, reference).map_err(|e| format!("{e:#}"))?;
        let (input, state, output) = (
            shape.input.to_string(),
            shape.state().to_string(),
            shape.output.to_string(),
        );
        let mut args = vec![
            "step",
            path_str(model)?,
            "--inputs",
            path_str(&inputs)?,
            "--reference",
            path_str(&kernel)?,
            "--input-width",
            &input,
            "--state-width",
            &state,
            "--output-width",
            &output,
        ];
        if quantize {
            args.push("--quantize-dynamic");
        }
        self.call(&args, name)
    }
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

/// Raw little-endian f32, as `numpy.fromfile(..., "<f4")` reads it.
fn write_f32(path: &Path, values: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// ONNX Runtime's cost of a call that computes nothing, per input width.
fn ort_overhead(ort: &Ort, rows: &[Row], steps: usize) -> BTreeMap<usize, Result<Timing, String>> {
    let widths: std::collections::BTreeSet<usize> =
        rows.iter().map(|r| r.entry.shape.input).collect();
    widths
        .into_iter()
        .map(|width| {
            let timing = ort.version.clone().and_then(|_| {
                let (w, n) = (width.to_string(), steps.to_string());
                let args = ["overhead", "--input-width", &w, "--steps", &n];
                ort.call(&args, &format!("overhead-{width}"))
                    .and_then(|v| Timing::from_json(&v))
            });
            (width, timing)
        })
        .collect()
}

fn row(entry: &ModelEntry, manifest: &Manifest, outcome: Result<Measures, String>) -> Row {
    let network = network_of(entry, manifest);
    let variant = entry
        .name
        .strip_prefix(&format!("{network}-"))
        .unwrap_or(&entry.name)
        .to_string();
    let referenced = manifest
        .models
        .iter()
        .any(|m| m.teacher.as_deref() == Some(&entry.name));
    Row {
        entry: entry.clone(),
        network,
        variant,
        teacher: entry.teacher.is_none() && referenced,
        outcome,
    }
}

/// The network an entry belongs to: that of the first teacher in its chain
/// (`timbre-flute-teacher` names `timbre-flute`); an entry with no teacher
/// belongs to the longest teacher network its name starts with.
fn network_of(entry: &ModelEntry, manifest: &Manifest) -> String {
    let stem = |name: &str| name.rsplit_once('-').map_or(name, |(s, _)| s).to_string();
    let mut root = entry;
    for _ in 0..manifest.models.len() {
        match root.teacher.as_deref().and_then(|t| manifest.get(t)) {
            Some(teacher) => root = teacher,
            None => break,
        }
    }
    let teachers: Vec<String> = manifest
        .models
        .iter()
        .filter_map(|m| m.teacher.as_deref())
        .map(stem)
        .collect();
    if root.name != entry.name || teachers.contains(&stem(&entry.name)) {
        return stem(&root.name);
    }
    teachers
        .into_iter()
        .filter(|t| entry.name.starts_with(&format!("{t}-")))
        .max_by_key(String::len)
        .unwrap_or_else(|| stem(&entry.name))
}

/// The held-out quality metrics of a role: key, column heading; the first
/// is the one plotted (lower is better for all).
fn quality_metrics(role: Role) -> &'static [(&'static str, &'static str)] {
    match role {
        Role::Melody => &[("test_nll", "test NLL (nats/step)")],
        Role::Timbre => &[
            ("test_lsd_db", "test LSD (dB)"),
            ("test_mrstft", "test MR-STFT"),
        ],
    }
}

/// Networks in the manifest's order, each with its rows.
fn networks(rows: &[Row]) -> Vec<(&str, Vec<&Row>)> {
    let mut out: Vec<(&str, Vec<&Row>)> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|(n, _)| *n == r.network) {
            Some((_, members)) => members.push(r),
            None => out.push((&r.network, vec![r])),
        }
    }
    out
}

/// Baselines recorded for a network: keyed `{network}-...`; one whose key
/// names no role (`ngram`) belongs to the network named after its role,
/// when it has that network's first quality metric.
fn baselines<'a>(
    network: &str,
    role: Role,
    manifest: &'a Manifest,
) -> Vec<(String, &'a BTreeMap<String, f64>)> {
    let metric = quality_metrics(role)[0].0;
    let roles = [Role::Melody, Role::Timbre].map(role_name);
    manifest
        .baselines
        .iter()
        .filter_map(|(key, figures)| {
            if let Some(label) = key.strip_prefix(&format!("{network}-")) {
                return Some((label.to_string(), figures));
            }
            let first = key.split('-').next().unwrap_or(key);
            let ours = network == role_name(role) && !roles.contains(&first);
            (ours && figures.contains_key(metric)).then(|| (key.clone(), figures))
        })
        .collect()
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Melody => "melody",
        Role::Timbre => "timbre",
    }
}

/// What the header of the report states besides the tables.
struct RunFacts {
    command: String,
    steps: usize,
    load_before: String,
    load_after: String,
    ort_version: Result<String, String>,
    overhead: BTreeMap<usize, Result<Timing, String>>,
    revision: Option<String>,
    stalls: usize,
}

/// The commit the report was measured at, and whether the tree differed.
fn revision() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short", "HEAD"])?;
    let changes = git(&["status", "--porcelain", "--untracked-files=no"])?;
    Some(if changes.is_empty() {
        format!("commit {head}")
    } else {
        format!("commit {head} with uncommitted changes in the working tree")
    })
}

/// How many timings have a p99.9 over a millisecond: steps that lost the
/// core to another process (no runtime here waits that long by itself).
fn stalls(rows: &[Row]) -> usize {
    let mut timings: Vec<Timing> = Vec::new();
    for m in rows.iter().filter_map(|r| r.outcome.as_ref().ok()) {
        timings.push(m.wren.timing);
        timings.extend(m.tract.iter().chain(&m.ort).map(|t| t.timing));
        if let Some(int8) = &m.int8 {
            timings.push(int8.wren.timing);
            timings.extend(int8.ort.iter().map(|t| t.timing));
        }
    }
    timings.iter().filter(|t| t.p999 > 1000.0).count()
}

fn markdown(rows: &[Row], manifest: &Manifest, context: &RunFacts, plots: &[String]) -> String {
    let mut md = header(context);
    let groups = networks(rows);
    for (network, members) in &groups {
        let role = Role::of(&members[0].entry.name);
        md += &network_table(network, role, members);
        let recorded = baselines(network, role, manifest);
        if !recorded.is_empty() {
            let text: Vec<String> = recorded
                .iter()
                .map(|(label, figures)| {
                    let values: Vec<String> = quality_metrics(role)
                        .iter()
                        .filter_map(|(k, h)| figures.get(*k).map(|v| format!("{h} {v:.3}")))
                        .collect();
                    format!("{label}: {}", values.join(", "))
                })
                .collect();
            md += &format!("\nBaselines from the manifest: {}.\n", text.join("; "));
        }
    }
    md += &int8_table(rows);
    md += &speedups(rows);
    if !plots.is_empty() {
        md += "\n## Quality against cost\n\n";
        md += "Lower is better on both axes; the teacher is the square. \
               Left: Wren's kernel, median microseconds per step. \
               Right: bytes of the weights as stored.\n\n";
        for file in plots {
            let stem = file.trim_end_matches(".png");
            md += &format!("![{stem}]({file})\n\n");
        }
    }
    md
}

fn header(context: &RunFacts) -> String {
    let (cpu, cores, flags) = cpu_info();
    let ort = match &context.ort_version {
        Ok(v) => format!("ONNX Runtime {v} (PyPI `onnxruntime`, CPU execution provider)"),
        Err(e) => format!("ONNX Runtime not available ({e}): its columns say n/a"),
    };
    let overhead: Vec<String> = context
        .overhead
        .iter()
        .filter_map(|(width, t)| {
            let t = t.as_ref().ok()?;
            Some(format!(
                "{:.1} us median, {:.1} us p99 with a [1, {width}] input",
                t.median, t.p99
            ))
        })
        .collect();
    let revision = context.revision.as_deref().unwrap_or("an unknown commit");
    let mut md = format!(
        "# Compression report\n\n\
         Produced by `{}` on {} (UTC) at {revision}, {} timed steps per model and runtime \
         after {WARMUP} untimed ones. CPU: {cpu}, {cores} logical cores ({flags}); Wren's \
         kernels ran on {:?}. Load average (1, 5, 15 min) {} at the start, {} at the end. \
         {ort}.\n\n",
        context.command,
        today(),
        context.steps,
        Isa::detect(),
        context.load_before,
        context.load_after
    );
    md += &stall_note(context);
    md += "Runtime columns, each median / p99 / p99.9 microseconds per step, on one thread, \
           the same ONNX file and the same example inputs, the state fed back:\n\n\
           - **Wren**: the real-time kernel (`GruKernel::step`), built from the file's \
           weights; allocation-free, timed in Rust with `Instant`.\n\
           - **tract**: `TractStep::run` on the optimized tract plan of the file, timed in \
           Rust; includes building its input tensors and copying its outputs (it allocates \
           every step).\n\
           - **ORT**: `InferenceSession.run` from Python (one intra-op and one inter-op \
           thread, sequential execution, all graph optimizations), timed with \
           `time.perf_counter_ns`; includes the Python binding's cost per call.\n\n";
    if !overhead.is_empty() {
        md += &format!(
            "ONNX Runtime's cost of a call that computes nothing (an Identity model, same \
             settings): {}. Every ORT figure includes it.\n\n",
            overhead.join("; ")
        );
    }
    md += "Max abs diff: the largest absolute difference, over every step's `y` and next state, \
           from Wren's kernel on the same file (each runtime feeds back its own state).\n";
    md
}

/// Why some p99.9 figures are milliseconds, when any are.
fn stall_note(context: &RunFacts) -> String {
    if context.stalls == 0 {
        return String::new();
    }
    let n = context.steps;
    let rank = n - ((n - 1) as f64 * 0.999).round() as usize;
    format!(
        "{} of the timings have a p99.9 over a millisecond. Of {n} steps the p99.9 is \
         the slowest but {}, and steps of about 4 ms, in every runtime alike, are time \
         slices the scheduler gave to other jobs on these cores, not the runtimes' own \
         cost. Medians are robust to this; p99 partly.\n\n",
        context.stalls,
        rank - 1
    )
}

fn network_table(network: &str, role: Role, members: &[&Row]) -> String {
    let metrics = quality_metrics(role);
    let mut md = format!("\n## {network}\n\n");
    let quality: Vec<&str> = metrics.iter().map(|(_, h)| *h).collect();
    md += &format!(
        "| variant | parameters | weight bytes | file bytes | gzipped | sparsity | rank | bits \
         | {} | Wren us | tract us | ORT us | max abs diff tract / ORT |\n",
        quality.join(" | ")
    );
    md += &format!("|---|{}\n", "---:|".repeat(11 + metrics.len()));
    for r in members {
        let mark = if r.teacher { " (teacher)" } else { "" };
        let quality: Vec<String> = metrics
            .iter()
            .map(|(k, _)| {
                r.entry
                    .metrics
                    .get(*k)
                    .map_or("".into(), |v| format!("{v:.3}"))
            })
            .collect();
        let cells = match &r.outcome {
            Ok(m) => vec![
                grouped(m.parameters),
                grouped(m.weight_bytes),
                grouped(m.file_bytes),
                m.gzip_bytes.as_ref().map_or("n/a".into(), |b| grouped(*b)),
                format!("{:.1}%", m.sparsity * 100.0),
                m.rank.map_or("-".into(), |r| r.to_string()),
                m.bits.to_string(),
                quality.join(" | "),
                m.wren.timing.cell(),
                timing_cell(&m.tract),
                timing_cell(&m.ort),
                format!("{} / {}", diff_cell(&m.tract), diff_cell(&m.ort)),
            ],
            Err(e) => {
                let message = e.replace('|', "/").replace('\n', " ");
                let mut cells = vec![format!("**error**: {message}")];
                cells.extend(vec![String::new(); 6]);
                cells.push(quality.join(" | "));
                cells.extend(vec![String::new(); 4]);
                cells
            }
        };
        md += &format!("| `{}`{mark} | {} |\n", r.variant, cells.join(" | "));
    }
    md + &unavailable_notes(members)
}

/// Why a runtime has no figures, once per runtime and reason.
fn unavailable_notes(members: &[&Row]) -> String {
    let mut reasons: Vec<(&str, &str, Vec<String>)> = Vec::new();
    for r in members {
        let Ok(m) = &r.outcome else { continue };
        for (runtime, result) in [("tract", &m.tract), ("ORT", &m.ort)] {
            let Err(e) = result else { continue };
            let variant = format!("`{}`", r.variant);
            match reasons
                .iter_mut()
                .find(|(rt, why, _)| *rt == runtime && why == e)
            {
                Some((_, _, variants)) => variants.push(variant),
                None => reasons.push((runtime, e, vec![variant])),
            }
        }
    }
    reasons
        .iter()
        .map(|(runtime, why, variants)| {
            format!("\n{runtime} n/a for {}: {why}\n", variants.join(", "))
        })
        .collect()
}

fn timing_cell(result: &Result<Measured, String>) -> String {
    result.as_ref().map_or("n/a".into(), |m| m.timing.cell())
}

fn diff_cell(result: &Result<Measured, String>) -> String {
    match result {
        Ok(Measured {
            max_abs_diff: Some(d),
            ..
        }) => format!("{d:.1e}"),
        _ => "n/a".into(),
    }
}

fn int8_table(rows: &[Row]) -> String {
    let mut md = String::from(
        "\n## int8 against ONNX Runtime's dynamic quantization\n\n\
         For each f32 model: Wren's int8 (`GruNet::quantized`: symmetric int8 weights, one \
         calibrated scale per output column, run by Wren's kernel) against \
         `onnxruntime.quantization.quantize_dynamic(..., weight_type=QInt8)` of the same f32 \
         file (its defaults: one scale per weight tensor; `DynamicQuantizeLinear` and \
         `MatMulInteger`, the operators of Wren's own int8 files), run by ONNX Runtime; \
         both timed as above (median / p99 / p99.9 us). Max abs diff is against Wren's f32 \
         kernel on the same inputs. Beside them, Wren's f32 kernel against tract on the f32 \
         file.\n\n\
         | model | Wren f32 us | tract f32 us | Wren f32 vs tract | Wren int8 us \
         | ORT dynamic int8 us | Wren int8 vs ORT int8 | max abs diff Wren int8 / ORT int8 |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let Ok(m) = &r.outcome else { continue };
        let Some(int8) = &m.int8 else { continue };
        md += &format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} / {} |\n",
            r.entry.name,
            m.wren.timing.cell(),
            timing_cell(&m.tract),
            speedup_cell(&m.tract, &m.wren),
            int8.wren.timing.cell(),
            timing_cell(&int8.ort),
            speedup_cell(&int8.ort, &int8.wren),
            diff_cell(&Ok(int8.wren.clone())),
            diff_cell(&int8.ort),
        );
    }
    md
}

/// How many times faster `ours` is than `theirs`, at the median.
fn speedup(theirs: &Result<Measured, String>, ours: &Measured) -> Option<f64> {
    let theirs = theirs.as_ref().ok()?;
    Some(theirs.timing.median / ours.timing.median)
}

fn speedup_cell(theirs: &Result<Measured, String>, ours: &Measured) -> String {
    speedup(theirs, ours).map_or("n/a".into(), |s| format!("{s:.1}x"))
}

/// The speed-ups of the int8 table in one sentence each.
fn speedups(rows: &[Row]) -> String {
    let collect = |pick: &dyn Fn(&Measures) -> Option<f64>| -> Vec<f64> {
        rows.iter()
            .filter_map(|r| r.outcome.as_ref().ok())
            .filter_map(pick)
            .collect()
    };
    let vs_tract = collect(&|m| m.int8.as_ref().and(speedup(&m.tract, &m.wren)));
    let vs_ort = collect(&|m| m.int8.as_ref().and_then(|i| speedup(&i.ort, &i.wren)));
    let int8_vs_f32 = collect(&|m| {
        m.int8
            .as_ref()
            .map(|i| m.wren.timing.median / i.wren.timing.median)
    });
    let mut md = String::from("\n");
    for (what, values) in [
        ("Wren's f32 kernel against tract", &vs_tract),
        (
            "Wren's int8 kernel against ONNX Runtime's dynamic int8",
            &vs_ort,
        ),
        ("Wren's int8 kernel against Wren's f32 kernel", &int8_vs_f32),
    ] {
        md += &match spread(values) {
            Some((low, mean, high)) => format!(
                "{what}: {mean:.2}x faster at the median (geometric mean over {} models; \
                 {low:.2}x to {high:.2}x).\n\n",
                values.len()
            ),
            None => format!("{what}: not measured.\n\n"),
        };
    }
    md
}

/// Least, geometric mean and greatest.
fn spread(values: &[f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mean = (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp();
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    Some((low, mean, high))
}

/// Writes the plot data and draws one figure per role; returns the PNG names.
fn plot(rows: &[Row], manifest: &Manifest, out: &Path, work: &Path) -> Result<Vec<String>> {
    let groups = networks(rows);
    let mut figures: Vec<(Role, Vec<Value>)> = Vec::new();
    for (network, members) in &groups {
        let role = Role::of(&members[0].entry.name);
        let (metric, label) = quality_metrics(role)[0];
        let points: Vec<Value> = members
            .iter()
            .filter_map(|r| {
                let m = r.outcome.as_ref().ok()?;
                Some(json!({
                    "variant": r.variant,
                    "teacher": r.teacher,
                    "quality": r.entry.metrics.get(metric)?,
                    "us": m.wren.timing.median,
                    "bytes": m.weight_bytes,
                }))
            })
            .collect();
        let lines: Vec<Value> = baselines(network, role, manifest)
            .into_iter()
            .filter_map(|(name, f)| Some(json!({"name": name, "quality": f.get(metric)?})))
            .collect();
        let series = json!({
            "label": network.strip_prefix(&format!("{}-", role_name(role))).unwrap_or(network),
            "metric": label,
            "points": points,
            "baselines": lines,
        });
        match figures.iter_mut().find(|(r, _)| *r == role) {
            Some((_, all)) => all.push(series),
            None => figures.push((role, vec![series])),
        }
    }
    let files: Vec<String> = figures
        .iter()
        .map(|(role, _)| format!("{}.png", role_name(*role)))
        .collect();
    let data = json!({
        "out": out,
        "figures": figures.iter().zip(&files).map(|((role, series), file)| json!({
            "file": file,
            "title": role_name(*role),
            "series": series,
        })).collect::<Vec<_>>(),
    });
    let path = work.join("plot.json");
    std::fs::write(&path, serde_json::to_string_pretty(&data)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let status = Command::new(PYTHON)
        .arg(PLOT_SCRIPT)
        .arg(&path)
        .status()
        .with_context(|| format!("running {PYTHON} {PLOT_SCRIPT}"))?;
    anyhow::ensure!(status.success(), "{PLOT_SCRIPT} failed ({status})");
    Ok(files)
}

fn print_summary(rows: &[Row]) {
    println!(
        "{:<30} {:>5} {:>12} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "model", "bits", "weight B", "wren p50", "tract p50", "ort p50", "wren int8", "ort int8"
    );
    let p50 = |r: &Result<Measured, String>| {
        r.as_ref()
            .map_or("n/a".into(), |m| format!("{:.1}", m.timing.median))
    };
    for r in rows {
        let Ok(m) = &r.outcome else {
            println!(
                "{:<30} error: {}",
                r.entry.name,
                r.outcome.as_ref().err().unwrap()
            );
            continue;
        };
        let (int8, ort_int8) = m.int8.as_ref().map_or(("".into(), "".into()), |i| {
            (format!("{:.1}", i.wren.timing.median), p50(&i.ort))
        });
        println!(
            "{:<30} {:>5} {:>12} {:>10.1} {:>10} {:>10} {:>11} {:>11}",
            r.entry.name,
            m.bits.split(' ').next().unwrap_or(""),
            grouped(m.weight_bytes),
            m.wren.timing.median,
            p50(&m.tract),
            p50(&m.ort),
            int8,
            ort_int8
        );
    }
    println!("microseconds per step, median; full percentiles in the report");
}

/// `1234567` as `1,234,567`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The CPU's model name, logical core count and the SIMD flags the kernels use.
fn cpu_info() -> (String, usize, String) {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = text
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, v)| v.trim().to_string());
    let cores = text.lines().filter(|l| l.starts_with("processor")).count();
    let flags: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .map(|l| {
            ["avx2", "fma", "avx512f", "avx512_vnni"]
                .into_iter()
                .filter(|f| l.split_whitespace().any(|x| x == *f))
                .collect()
        })
        .unwrap_or_default();
    (model, cores, flags.join(", "))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Today's date, `YYYY-MM-DD` in UTC.
fn today() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Days since 1970-01-01 to a civil date (proleptic Gregorian calendar).
    let z = (seconds / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use wren::model::onnx::export;
    use wren::model::{GruLayer, Matrix, Shape};

    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(2_514_483), "2,514,483");
    }

    #[test]
    fn percentiles_pick_the_rounded_rank() {
        let times: Vec<f64> = (1..=1000).map(f64::from).collect();
        let t = Timing::of(&times);
        assert_eq!((t.median, t.p99, t.p999), (501.0, 990.0, 999.0));
    }

    #[test]
    fn networks_follow_the_teacher_chain() {
        let manifest = Manifest::from_json(wren::engine::models::EMBEDDED_MANIFEST).unwrap();
        for entry in &manifest.models {
            let network = network_of(entry, &manifest);
            let expected = if entry.name.starts_with("timbre-") {
                entry
                    .name
                    .splitn(3, '-')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join("-")
            } else {
                "melody".to_string()
            };
            assert_eq!(network, expected, "{}", entry.name);
        }
    }

    fn matrix(rows: usize, cols: usize, seed: usize) -> Matrix {
        let values = (0..rows * cols)
            .map(|i| ((i * 7 + seed) % 13) as f32 / 20.0 - 0.3)
            .collect();
        Matrix::F32 { rows, cols, values }
    }

    /// A timbre-shaped net with a factorized recurrent matrix and some zeros.
    fn factorized_net(rank: usize) -> GruNet {
        let (input, output) = Role::Timbre.widths();
        let hidden = 8;
        let w_hidden = Matrix::LowRank {
            left: Box::new(matrix(hidden, rank, 2)),
            right: Box::new(matrix(rank, 3 * hidden, 3)),
        };
        GruNet {
            layers: vec![GruLayer {
                w_input: matrix(input, 3 * hidden, 1),
                w_hidden,
                b_input: vec![0.1; 3 * hidden],
                b_hidden: vec![-0.1; 3 * hidden],
            }],
            w_out: matrix(hidden, output, 4),
            b_out: vec![0.0; output],
        }
    }

    #[test]
    fn compressed_variants_and_broken_files_become_rows() {
        let dir = std::env::temp_dir().join(format!("wren-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ort = Ort {
            version: Err("not used in tests".into()),
            work: dir.clone(),
        };
        let net = factorized_net(2);
        std::fs::write(dir.join("low-rank.onnx"), export(&net, &[])).unwrap();
        std::fs::write(dir.join("broken.onnx"), b"not a model").unwrap();
        let manifest = Manifest::from_json(wren::engine::models::EMBEDDED_MANIFEST).unwrap();
        let mut entry = manifest.get("timbre-flute-student").unwrap().clone();
        entry.file = "low-rank.onnx".into();

        let m = measure_guarded(&entry, &dir, &ort, 50).unwrap();
        assert_eq!((m.rank, m.bits), (Some(2), "32"));
        assert!(m.sparsity > 0.0 && m.parameters < Shape::parameters(&net.shape()));
        assert!(m.tract.unwrap().max_abs_diff.unwrap() < 1e-4);
        assert!(m.ort.is_err() && m.int8.unwrap().ort.is_err());

        entry.file = "broken.onnx".into();
        assert!(measure_guarded(&entry, &dir, &ort, 50).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
