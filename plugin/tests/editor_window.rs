//! Wren's editor in a real window: the bundled `Wren.clap` opened by a CLAP
//! host (clack-host) into an X11 window of the test's, and the standalone
//! application's own window. Screenshots are read back from the X server:
//! the window must not be blank, must show Wren's notes in its piano roll,
//! and its labels must be legible to OCR (tesseract). Buttons are clicked
//! through XTEST where OCR finds them: Save MIDI file in the host, and in
//! the standalone the Audio panel's buffer list and restart.
//!
//! Needs an X display (run under `xvfb-run`), the bundle (`cargo xtask
//! bundle`) and, for the standalone, `target/release/wren-standalone`.
//! Without them the tests are skipped, unless `WREN_REQUIRE_DISPLAY=1`.
//! Screenshots go to `target/editor/`; with `WREN_WRITE_SCREENSHOT=1` the
//! host's also becomes `docs/editor.png`, the README's picture.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clack_extensions::gui::{GuiApiType, GuiConfiguration, GuiSize, PluginGui, Window};
use common::{Instance, Playhead, TestHost};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ConnectionExt as _, CreateWindowAux, ImageFormat, WindowClass,
};
use x11rb::rust_connection::RustConnection;

/// Amber, the colour of Wren's notes in the piano roll.
const NOTE_COLOUR: [u8; 3] = [0xe0, 0x9f, 0x3e];

/// The labels every screenshot must show.
const LABELS: [&str; 12] = [
    "Presets",
    "Sound",
    "Melody",
    "Piano roll",
    "Models",
    "Export MIDI",
    "studio",
    "balanced",
    "ultra",
    "Instrument",
    "Temperature",
    "Save MIDI file",
];

fn required() -> bool {
    std::env::var("WREN_REQUIRE_DISPLAY").is_ok_and(|v| v == "1")
}

/// The X server, or `None` (the test is skipped) without a display.
fn display() -> Option<(RustConnection, usize)> {
    match x11rb::connect(None) {
        Ok(connection) => Some(connection),
        Err(error) => {
            assert!(!required(), "no X display ({error}); run under xvfb-run");
            eprintln!("skipped: no X display ({error})");
            None
        }
    }
}

fn output_folder() -> PathBuf {
    let folder = common::bundle_path()
        .parent()
        .and_then(Path::parent)
        .expect("the bundle sits in target/bundled")
        .join("editor");
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// An RGB picture.
struct Picture {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Picture {
    fn grab(connection: &RustConnection, window: u32) -> Picture {
        let geometry = connection
            .get_geometry(window)
            .unwrap()
            .reply()
            .expect("window geometry");
        let (width, height) = (geometry.width as usize, geometry.height as usize);
        let image = connection
            .get_image(
                ImageFormat::Z_PIXMAP,
                window,
                0,
                0,
                geometry.width,
                geometry.height,
                !0,
            )
            .unwrap()
            .reply()
            .expect("window image");
        assert_eq!(image.data.len(), width * height * 4, "32-bit pixels");
        let rgb = image
            .data
            .chunks_exact(4)
            .flat_map(|bgrx| [bgrx[2], bgrx[1], bgrx[0]])
            .collect();
        Picture { width, height, rgb }
    }

    fn save(&self, path: &Path, scale: usize) {
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(file),
            (self.width * scale) as u32,
            (self.height * scale) as u32,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut scaled = Vec::with_capacity(self.rgb.len() * scale * scale);
        for y in 0..self.height * scale {
            let row = &self.rgb[(y / scale) * self.width * 3..][..self.width * 3];
            for pixel in row.chunks_exact(3) {
                for _ in 0..scale {
                    scaled.extend_from_slice(pixel);
                }
            }
        }
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&scaled).unwrap();
    }

    /// Distinct colours, up to `cap`.
    fn colours(&self, cap: usize) -> usize {
        let mut seen = std::collections::HashSet::new();
        for pixel in self.rgb.chunks_exact(3) {
            seen.insert([pixel[0], pixel[1], pixel[2]]);
            if seen.len() >= cap {
                break;
            }
        }
        seen.len()
    }

    /// Pixels within a small distance of `colour`.
    fn count(&self, colour: [u8; 3]) -> usize {
        self.rgb
            .chunks_exact(3)
            .filter(|p| (0..3).all(|i| p[i].abs_diff(colour[i]) <= 6))
            .count()
    }
}

/// The text tesseract reads in a picture, or `None` without tesseract.
fn read_text(picture: &Picture, name: &str) -> Option<String> {
    let path = output_folder().join(format!("{name}-ocr.png"));
    picture.save(&path, 2);
    match Command::new("tesseract")
        .arg(&path)
        .arg("stdout")
        .args(["--psm", "11"])
        .stderr(Stdio::null())
        .output()
    {
        Ok(output) if output.status.success() => {
            Some(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        outcome => {
            assert!(!required(), "tesseract did not run: {outcome:?}");
            eprintln!("no OCR: tesseract did not run");
            None
        }
    }
}

/// Where tesseract reads `word` in a picture: the centre of the first
/// match, in the picture's pixels; `None` without tesseract or the word.
fn find_word(picture: &Picture, name: &str, word: &str) -> Option<(i16, i16)> {
    find_words(picture, name, word).first().copied()
}

/// Where tesseract reads `word` in a picture, every match in reading order.
fn find_words(picture: &Picture, name: &str, word: &str) -> Vec<(i16, i16)> {
    let path = output_folder().join(format!("{name}-find.png"));
    picture.save(&path, 2);
    let output = Command::new("tesseract")
        .arg(&path)
        .arg("stdout")
        .args(["--psm", "11", "tsv"])
        .stderr(Stdio::null())
        .output();
    let Ok(output) = output else {
        return Vec::new();
    };
    // Columns: level, page, block, paragraph, line, word, left, top,
    // width, height, confidence, text.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('\t').collect();
            let number = |i: usize| cells.get(i)?.parse::<i32>().ok();
            (cells.get(11) == Some(&word)).then_some(())?;
            let (left, top) = (number(6)?, number(7)?);
            let (width, height) = (number(8)?, number(9)?);
            Some((
                ((left + width / 2) / 2) as i16,
                ((top + height / 2) / 2) as i16,
            ))
        })
        .collect()
}

/// Clicks the left mouse button at a point of `window`, as a user's hand
/// would (XTEST).
fn click(connection: &RustConnection, screen: usize, window: u32, (x, y): (i16, i16)) {
    use x11rb::protocol::xproto::{BUTTON_PRESS_EVENT, BUTTON_RELEASE_EVENT, MOTION_NOTIFY_EVENT};
    use x11rb::protocol::xtest::ConnectionExt as _;
    let root = connection.setup().roots[screen].root;
    let at = connection
        .translate_coordinates(window, root, x, y)
        .unwrap()
        .reply()
        .expect("the window's place on the screen");
    let (x, y) = (at.dst_x, at.dst_y);
    for (kind, detail) in [
        (MOTION_NOTIFY_EVENT, 0),
        (BUTTON_PRESS_EVENT, 1),
        (BUTTON_RELEASE_EVENT, 1),
    ] {
        connection
            .xtest_fake_input(kind, detail, 0, root, x, y, 0)
            .unwrap();
        connection.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// Checks a screenshot: not blank, notes in the roll, every label legible.
fn check_picture(picture: &Picture, name: &str) {
    picture.save(&output_folder().join(format!("{name}.png")), 1);
    let colours = picture.colours(200);
    assert!(
        colours >= 50,
        "{name}: only {colours} colours: blank window?"
    );
    let notes = picture.count(NOTE_COLOUR);
    assert!(
        notes > 200,
        "{name}: {notes} amber pixels: no notes in the roll?"
    );
    if let Some(text) = read_text(picture, name) {
        let missing: Vec<&str> = LABELS
            .iter()
            .copied()
            .filter(|label| !text.contains(label))
            .collect();
        assert!(
            missing.is_empty(),
            "{name}: OCR misses {missing:?} in:\n{text}"
        );
    }
}

/// A top-level window of the test's, for the plugin's editor to live in.
fn host_window(connection: &RustConnection, screen: usize, size: GuiSize) -> u32 {
    let root = connection.setup().roots[screen].root;
    let window = connection.generate_id().unwrap();
    connection
        .create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            root,
            0,
            0,
            size.width as u16,
            size.height as u16,
            0,
            WindowClass::INPUT_OUTPUT,
            0,
            &CreateWindowAux::new().background_pixel(0),
        )
        .unwrap()
        .check()
        .expect("create the host's window");
    // Checked: the server has made and mapped the window before the
    // editor, on a connection of its own, asks to be put inside it.
    connection
        .map_window(window)
        .unwrap()
        .check()
        .expect("map the host's window");
    window
}

/// Plays blocks of 512 samples at about real time on its own thread, on a
/// running transport, until told to stop; hands the processor back with
/// the peak of what it played.
struct Audio {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(
        clack_host::prelude::StoppedPluginAudioProcessor<TestHost>,
        f32,
    )>,
}

impl Audio {
    fn start(instance: &mut Instance) -> Audio {
        let processor = instance.activate(48_000.0, 512);
        let mut processor = processor.start_processing().expect("start processing");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut playhead = Playhead::new(48_000.0);
            let started = Instant::now();
            let mut peak = 0.0f32;
            while !flag.load(Ordering::Acquire) {
                let (audio, _) = playhead.next(&mut processor, 512, &[]);
                peak = peak.max(common::peak(&audio));
                let due = Duration::from_secs_f64(playhead.time as f64 / 48_000.0);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            (processor.stop_processing(), peak)
        });
        Audio { stop, thread }
    }

    fn finish(self, instance: &mut Instance) -> f32 {
        self.stop.store(true, Ordering::Release);
        let (stopped, peak) = self.thread.join().expect("the audio thread ran");
        instance.instance.deactivate(stopped);
        peak
    }
}

/// The editor's extension of an instance.
fn gui(instance: &mut Instance) -> PluginGui {
    instance
        .instance
        .plugin_handle()
        .get_extension()
        .expect("Wren has the GUI extension")
}

/// Opens the editor embedded in a new window of the test's; returns the window.
fn open(instance: &mut Instance, connection: &RustConnection, screen: usize) -> u32 {
    let gui = gui(instance);
    let handle = instance.instance.plugin_handle();
    let configuration = GuiConfiguration {
        api_type: GuiApiType::X11,
        is_floating: false,
    };
    assert!(gui.is_api_supported(&handle, configuration));
    gui.create(&handle, configuration)
        .expect("create the editor");
    let size = gui.get_size(&handle).expect("the editor's size");
    let window = host_window(connection, screen, size);
    // SAFETY: the window is the test's own and lives until the test ends,
    // after the editor is destroyed.
    unsafe { gui.set_parent(&handle, Window::from_x11_handle(window as _)) }
        .expect("embed the editor");
    gui.show(&handle).expect("show the editor");
    window
}

fn close(instance: &mut Instance) {
    let gui = gui(instance);
    let handle = instance.instance.plugin_handle();
    let _ = gui.hide(&handle);
    gui.destroy(&handle);
}

/// Runs the host's main thread for `time`.
fn wait(instance: &mut Instance, time: Duration) {
    let end = Instant::now() + time;
    while Instant::now() < end {
        instance.pump();
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_editor_opens_in_a_clap_host_and_shows_presets_notes_and_labels() {
    let Some((connection, screen)) = display() else {
        return;
    };
    let Some(entry) = common::entry() else {
        return;
    };
    let mut instance = Instance::new(&entry);
    let audio = Audio::start(&mut instance);
    let window = open(&mut instance, &connection, screen);
    // Eight seconds: the presets are timed and four bars have played.
    wait(&mut instance, Duration::from_secs(8));
    let picture = Picture::grab(&connection, window);
    close(&mut instance);
    let peak = audio.finish(&mut instance);
    assert!(peak > 0.01, "Wren played (peak {peak})");
    check_picture(&picture, "clap");
    if std::env::var("WREN_WRITE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/editor.png");
        picture.save(&docs, 1);
        eprintln!("wrote {}", docs.display());
    }
}

#[test]
fn the_save_button_exports_what_wren_played_as_midi_in_key() {
    let Some((connection, screen)) = display() else {
        return;
    };
    let Some(entry) = common::entry() else {
        return;
    };
    let folder = output_folder().join("export");
    let _ = std::fs::remove_dir_all(&folder);
    // Read when the editor opens; set before any of Wren's threads start.
    std::env::set_var("WREN_EXPORT_DIR", &folder);
    let mut instance = Instance::new(&entry);
    let audio = Audio::start(&mut instance);
    let window = open(&mut instance, &connection, screen);
    wait(&mut instance, Duration::from_secs(6));
    let before = Picture::grab(&connection, window);
    let Some(button) = find_word(&before, "export", "Save") else {
        assert!(!required(), "OCR finds no Save button");
        eprintln!("skipped: no OCR");
        close(&mut instance);
        audio.finish(&mut instance);
        return;
    };
    click(&connection, screen, window, button);
    wait(&mut instance, Duration::from_millis(500));
    let after = Picture::grab(&connection, window);
    close(&mut instance);
    audio.finish(&mut instance);

    let file = folder.join("wren-phrase-001.mid");
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let pitches = wren::melody::smf::note_on_pitches(&bytes).expect("a MIDI file");
    assert!(pitches.len() >= 4, "{} notes exported", pitches.len());
    // Wren's default key and scale: D major.
    let d_major = [2, 4, 6, 7, 9, 11, 1];
    for pitch in &pitches {
        assert!(d_major.contains(&(pitch % 12)), "{pitch} is not in D major");
    }
    let text = read_text(&after, "export-after").unwrap_or_default();
    assert!(
        text.contains("Saved"),
        "the editor says where it saved:\n{text}"
    );
    println!(
        "saved {} notes to {} by clicking Save at {button:?}",
        pitches.len(),
        file.display()
    );
}

#[test]
fn opening_and_closing_the_editor_fifty_times_while_audio_runs_is_safe() {
    let Some((connection, screen)) = display() else {
        return;
    };
    let Some(entry) = common::entry() else {
        return;
    };
    let mut instance = Instance::new(&entry);
    let audio = Audio::start(&mut instance);
    for _ in 0..50 {
        let window = open(&mut instance, &connection, screen);
        wait(&mut instance, Duration::from_millis(40));
        close(&mut instance);
        connection.destroy_window(window).unwrap();
        connection.flush().unwrap();
    }
    wait(&mut instance, Duration::from_millis(500));
    let peak = audio.finish(&mut instance);
    assert!(peak > 0.01, "Wren kept playing (peak {peak})");
}

#[test]
fn each_instance_keeps_its_own_window_size_in_its_state() {
    let Some((connection, screen)) = display() else {
        return;
    };
    let Some(entry) = common::entry() else {
        return;
    };
    let mut first = Instance::new(&entry);
    let mut second = Instance::new(&entry);
    let default = {
        let gui = gui(&mut first);
        gui.get_size(&first.instance.plugin_handle())
            .expect("a size")
    };
    let window_first = open(&mut first, &connection, screen);
    let window_second = open(&mut second, &connection, screen);
    let gui_first = gui(&mut first);
    let handle = first.instance.plugin_handle();
    assert!(gui_first.can_resize(&handle));
    let wanted = GuiSize {
        width: 1200,
        height: 820,
    };
    gui_first.set_size(&handle, wanted).expect("resize");
    wait(&mut first, Duration::from_millis(500));
    wait(&mut second, Duration::from_millis(100));
    let gui_second = gui(&mut second);
    let other = gui_second
        .get_size(&second.instance.plugin_handle())
        .expect("a size");
    assert_eq!((other.width, other.height), (default.width, default.height));
    close(&mut first);
    close(&mut second);
    for window in [window_first, window_second] {
        connection.destroy_window(window).unwrap();
    }
    connection.flush().unwrap();

    let saved = first.save();
    let json = common::state_json(&saved);
    let field = json["fields"]["editor-size"]
        .as_str()
        .expect("a saved size");
    let size: serde_json::Value = serde_json::from_str(field).unwrap();
    assert_eq!(
        size,
        serde_json::json!({"width": 1200, "height": 820}),
        "{json}"
    );
    let mut restored = Instance::new(&entry);
    assert!(restored.load(&saved));
    let gui_restored = gui(&mut restored);
    let size = gui_restored
        .get_size(&restored.instance.plugin_handle())
        .expect("a size");
    assert_eq!((size.width, size.height), (1200, 820));
}

/// The standalone application's window, found by its title.
fn find_window(connection: &RustConnection, screen: usize, title: &str) -> Option<u32> {
    let root = connection.setup().roots[screen].root;
    let mut stack = vec![root];
    while let Some(window) = stack.pop() {
        let name = connection
            .get_property(false, window, AtomEnum::WM_NAME, AtomEnum::STRING, 0, 256)
            .ok()?
            .reply()
            .ok()?;
        if name.value == title.as_bytes() {
            return Some(window);
        }
        stack.extend(connection.query_tree(window).ok()?.reply().ok()?.children);
    }
    None
}

struct Standalone(Child);

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The standalone application, or `None` (the test is skipped) when it
/// has not been built.
fn standalone_binary() -> Option<PathBuf> {
    let binary = common::bundle_path()
        .parent()
        .and_then(Path::parent)
        .expect("target folder")
        .join("release")
        .join("wren-standalone");
    if binary.exists() {
        return Some(binary);
    }
    assert!(!required(), "{} is missing", binary.display());
    eprintln!("skipped: {} is missing", binary.display());
    None
}

/// Waits for a window titled "Wren" while `app` runs.
fn standalone_window(connection: &RustConnection, screen: usize, app: &mut Child) -> u32 {
    let started = Instant::now();
    loop {
        if let Some(window) = find_window(connection, screen, "Wren") {
            return window;
        }
        let status = app.try_wait().unwrap();
        assert!(status.is_none(), "the standalone ended: {status:?}");
        assert!(started.elapsed() < Duration::from_secs(30), "no window");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_editor_opens_in_the_standalone_application() {
    let Some((connection, screen)) = display() else {
        return;
    };
    let Some(binary) = standalone_binary() else {
        return;
    };
    let mut app = Standalone(
        Command::new(&binary)
            .args(["--backend", "dummy", "--period-size", "512"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the standalone"),
    );
    let window = standalone_window(&connection, screen, &mut app.0);
    std::thread::sleep(Duration::from_secs(8));
    let picture = Picture::grab(&connection, window);
    check_picture(&picture, "standalone");
    assert!(
        app.0.try_wait().unwrap().is_none(),
        "the standalone still runs"
    );
}

/// A process the test did not start (the restarted standalone), ended
/// when the test ends.
struct Adopted(u32);

impl Drop for Adopted {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.to_string()).status();
    }
}

/// The process whose command line holds `needle`, and that command line.
fn process_with(needle: &str) -> Option<(u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bytes = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = bytes
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.iter()
                .any(|a| a.contains(needle))
                .then_some((pid, args))
        })
}

#[test]
fn the_audio_panel_refuses_a_backend_that_cannot_start_and_restarts_with_a_new_buffer_and_the_same_state(
) {
    let Some((connection, screen)) = display() else {
        return;
    };
    let Some(binary) = standalone_binary() else {
        return;
    };
    // Every parameter away from its default: key A, instrument violin, ...
    let state = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/state-0.1.0.json");
    let mut app = Standalone(
        Command::new(&binary)
            .args([
                "--backend",
                "dummy",
                "--period-size",
                "512",
                "--state",
                state,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the standalone"),
    );
    let first = app.0.id();
    let window = standalone_window(&connection, screen, &mut app.0);
    std::thread::sleep(Duration::from_secs(4));

    // Picks `option` from the drop-down right of the panel's `label` (the
    // last `label` on screen: "Buffer" also opens the top line). The list
    // opens above or below; its `option` is where none was before.
    let pick = |label: &str, option: &str| -> Option<()> {
        let picture = Picture::grab(&connection, window);
        let &(x, y) = find_words(&picture, "restart-label", label).last()?;
        let before = find_words(&picture, "restart-before", option);
        click(&connection, screen, window, (x + 60, y));
        std::thread::sleep(Duration::from_millis(500));
        let open = Picture::grab(&connection, window);
        let near =
            |(ax, ay): (i16, i16), (bx, by): (i16, i16)| (ax - bx).abs() < 8 && (ay - by).abs() < 8;
        let at = find_words(&open, "restart-list", option)
            .into_iter()
            .find(|&word| !before.iter().any(|&old| near(old, word)))
            .unwrap_or_else(|| panic!("{option} in the {label} list"));
        click(&connection, screen, window, at);
        std::thread::sleep(Duration::from_millis(500));
        Some(())
    };
    let press_restart = || {
        let picture = Picture::grab(&connection, window);
        let restart = find_word(&picture, "restart-button", "Restart").expect("the Restart button");
        click(&connection, screen, window, restart);
    };

    // With no JACK server, jack is refused in the window and Wren runs on.
    let jack_runs = Command::new("pgrep")
        .args(["-x", "jackd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if pick("Backend", "jack").is_none() {
        assert!(!required(), "OCR finds no Backend label");
        eprintln!("skipped: no OCR");
        return;
    }
    if !jack_runs {
        press_restart();
        std::thread::sleep(Duration::from_secs(1));
        assert!(app.0.try_wait().unwrap().is_none(), "Wren ended");
        let refused = read_text(&Picture::grab(&connection, window), "refused").unwrap_or_default();
        assert!(refused.contains("No JACK server"), "{refused}");
    }
    pick("Backend", "dummy").expect("the Backend list");
    // Then a larger buffer on the dummy backend.
    pick("Buffer", "1024").expect("the Buffer list");
    std::thread::sleep(Duration::from_millis(500));
    press_restart();

    // The first process ends; a second starts with the new buffer and a
    // state file holding the first one's parameters.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = app.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the standalone did not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let saved = std::env::temp_dir().join(format!("wren-restart-{first}.json"));
    let (second, args) = loop {
        if let Some(found) = process_with(&saved.display().to_string()) {
            break found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no second process"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _second = Adopted(second);
    let period = args.iter().position(|a| a == "--period-size");
    assert_eq!(
        period.and_then(|i| args.get(i + 1)).map(String::as_str),
        Some("1024"),
        "{args:?}"
    );
    assert!(args.iter().any(|a| a == "dummy"), "{args:?}");
    let carried: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    for name in ["key", "instrument", "mode", "preset", "range_low", "seed"] {
        assert_eq!(
            carried["params"][name], golden["params"][name],
            "{name} carried over"
        );
    }

    // Its window says what runs now.
    let started = Instant::now();
    let text = loop {
        if let Some(window) = find_window(&connection, screen, "Wren") {
            std::thread::sleep(Duration::from_secs(3));
            let picture = Picture::grab(&connection, window);
            let text = read_text(&picture, "restarted").unwrap_or_default();
            if text.contains("1024 samples") {
                break text;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the restarted window does not show 1024 samples"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(text.contains("Restart"), "{text}");
}
