//! Lists of videos (`--list`, `--test-list`): a text file with one video path a line, relative
//! to a root folder (`--videos`); blank lines and lines starting with `#` are skipped.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The videos `list` names, each joined to `root` (as written without one).
pub fn read_video_list(list: &Path, root: Option<&Path>) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(list)
        .with_context(|| format!("reading the video list {}", list.display()))?;
    let videos: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| root.map_or_else(|| PathBuf::from(l), |r| r.join(l)))
        .collect();
    anyhow::ensure!(
        !videos.is_empty(),
        "the video list {} names no video",
        list.display()
    );
    Ok(videos)
}

/// The videos of a command: `positional` as given, then those of `list` (under `root`).
pub fn select_videos(
    positional: &[PathBuf],
    list: Option<&Path>,
    root: Option<&Path>,
) -> Result<Vec<PathBuf>> {
    let mut videos = positional.to_vec();
    if let Some(list) = list {
        videos.extend(read_video_list(list, root)?);
    }
    anyhow::ensure!(
        !videos.is_empty(),
        "no video: give the videos as arguments or a list of them with --list FILE"
    );
    Ok(videos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_resolve_under_the_root_and_skip_comments() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let list = dir.path().join("test.txt");
        std::fs::write(
            &list,
            "# UCF-Crime test\nAbuse/Abuse028_x264.mp4\n\n  Normal_003.mp4  \n",
        )?;
        let got = select_videos(
            &[PathBuf::from("a.mp4")],
            Some(&list),
            Some(Path::new("/data")),
        )?;
        assert_eq!(
            got,
            [
                PathBuf::from("a.mp4"),
                PathBuf::from("/data/Abuse/Abuse028_x264.mp4"),
                PathBuf::from("/data/Normal_003.mp4")
            ]
        );
        assert_eq!(
            read_video_list(&list, None)?[1],
            PathBuf::from("Normal_003.mp4")
        );
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "# nothing\n")?;
        let e = format!(
            "{:#}",
            read_video_list(&empty, None)
                .err()
                .ok_or_else(|| anyhow::anyhow!("accepted"))?
        );
        assert!(e.contains("names no video"), "{e}");
        let e = format!(
            "{:#}",
            select_videos(&[], None, None)
                .err()
                .ok_or_else(|| anyhow::anyhow!("accepted"))?
        );
        assert!(e.contains("--list FILE"), "{e}");
        Ok(())
    }
}
