//! The font of the PNG plots' text. Class names and titles come in any language, so the first
//! font found with Chinese, Japanese and Korean glyphs is used: `$FGCLIP_FONT` (a .ttf, .otf
//! or .ttc file), else Debian's WenQuanYi Micro Hei (`fonts-wqy-microhei`, which
//! `scripts/install-deps` installs) or Noto Sans CJK (`fonts-noto-cjk`), else macOS's
//! PingFang or Hiragino; then DejaVu Sans (Latin only: CJK characters come out as boxes).
//! With none, PNG plots are drawn without text and a note says how to get one; SVG plots
//! keep their text either way.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Fonts with CJK glyphs, then Latin-only fallbacks (the bool: has CJK).
const CANDIDATES: &[(&str, bool)] = &[
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", true),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", true),
    (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        true,
    ),
    ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", true),
    (
        "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
        true,
    ),
    (
        "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
        true,
    ),
    ("/System/Library/Fonts/PingFang.ttc", true),
    ("/System/Library/Fonts/Hiragino Sans GB.ttc", true),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", false),
    ("/usr/share/fonts/dejavu/DejaVuSans.ttf", false),
];

const HOW: &str = "install fonts-wqy-microhei (scripts/install-deps does) or fonts-noto-cjk, or set FGCLIP_FONT to a .ttf/.otf/.ttc file";

/// The plot font, registered with plotters as "sans-serif" on the first call; None (and a
/// note, once) when no usable font is found.
pub fn plot_font() -> Option<&'static Path> {
    static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();
    FONT.get_or_init(|| {
        let found = find();
        match &found {
            None => eprintln!(
                "note: no font found for the PNG plots' text; they are drawn without it (the SVG plots have it): {HOW}"
            ),
            Some((path, false)) => eprintln!(
                "note: the PNG plots' text is drawn with {} (no Chinese, Japanese or Korean glyphs): {HOW}",
                path.display()
            ),
            Some(_) => {}
        }
        found.map(|(p, _)| p)
    })
    .as_deref()
}

fn find() -> Option<(PathBuf, bool)> {
    if let Some(path) = std::env::var_os("FGCLIP_FONT").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        match register(&path) {
            Ok(()) => return Some((path, true)),
            Err(e) => eprintln!(
                "note: FGCLIP_FONT={}: {e}; looking for an installed font",
                path.display()
            ),
        }
    }
    CANDIDATES.iter().find_map(|&(p, cjk)| {
        let path = Path::new(p);
        (path.is_file() && register(path).is_ok()).then(|| (path.to_path_buf(), cjk))
    })
}

fn register(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it ({e})"))?;
    // plotters keeps registered fonts for the whole process ('static): read once, kept.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes).map_err(
        |_| "not a font file plotters can read (TrueType, OpenType or a collection)".into(),
    )
}
