//! Zero-shot anomaly detection on videos (`fgclip detect`) and snippet features for
//! VadCLIP-style pipelines (`fgclip extract`).
//!
//! A video is cut into snippets of `stride` frames; each is represented by its centre
//! frame's embedding (or the mean over several of its frames), scored against the prompt
//! set's classes, and its score repeated over its frames. Only the snippet frames are
//! converted and resized, and embeddings are computed in batches, so memory stays flat on
//! hour-long videos.

mod heldout;
mod prompts;
mod snippets;
mod tower;

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use fgclip_core::ClipModel;
use fgclip_core::fusion::TemporalFusion;
use fgclip_core::zeroshot::ZeroShotHead;
use indicatif::ProgressBar;
use serde::Serialize;

pub use heldout::{HeldOut, VideoOutcome, score_held_out};
pub use prompts::{PromptClass, PromptSet, build_head};
pub use snippets::{
    ExtractLayout, SnippetTiming, Snippets, extract_features, snippet_embeddings,
    snippet_embeddings_timed, video_features,
};
pub use tower::{ImageTower, Prepared};

use crate::data::preprocess::Preprocess;
use crate::data::video::{VideoReader, probe};
use crate::device::host_f32;
use crate::eval::VideoTruth;
use crate::plot::{Canvas, ScorePlot, heat_overlay, write_svg};

/// What embeds a video's snippets: an image tower (CLIP's or FG-CLIP 2's), and the temporal
/// transformer that fuses a snippet's frames where the model was trained with one
/// (otherwise their mean).
pub struct VideoModel {
    pub tower: ImageTower,
    pub fusion: Option<TemporalFusion>,
    /// Frames per clip the temporal transformer was trained on.
    pub fusion_frames: Option<usize>,
}

impl VideoModel {
    /// A CLIP model that pools frames by their mean, its frames squashed to S×S.
    pub fn mean_pooling(clip: ClipModel) -> Self {
        Self {
            tower: ImageTower::Clip {
                model: Box::new(clip),
                preprocess: Preprocess::Squash,
            },
            fusion: None,
            fusion_frames: None,
        }
    }

    /// An HF model folder (CLIP, FG-CLIP v1 or FG-CLIP 2) with its temporal transformer,
    /// if `fgclip.json` declares one. `max_num_patches`: FG-CLIP 2's patch budget a frame
    /// (dynamic budgets off); none: the folder's `preprocessor_config.json`. `preprocess`:
    /// how CLIP's frames become S×S; none: the model's own (see
    /// [`crate::checkpoint::preprocessor::model_preprocess`]).
    pub fn load(
        dir: &Path,
        device: &Device,
        max_num_patches: Option<usize>,
        preprocess: Option<Preprocess>,
    ) -> Result<Self> {
        use crate::checkpoint::fgclip2::{self as fg2, ModelKind};
        if fg2::model_kind(dir)? == ModelKind::Fgclip2 {
            if preprocess.is_some_and(|p| p != Preprocess::Squash) {
                bail!(
                    "--preprocess is for CLIP and FG-CLIP v1 models; FG-CLIP 2's frames go through its own image processor (--max-num-patches)"
                );
            }
            let mut processor = fg2::read_image_processor(dir)?;
            if let Some(m) = max_num_patches {
                if m == 0 {
                    bail!("--max-num-patches must be at least 1");
                }
                processor.max_num_patches = m;
                processor.dynamic_max_patches = false;
            }
            return Ok(Self {
                tower: ImageTower::Fgclip2 {
                    model: Box::new(fg2::load_fgclip2(dir, device)?),
                    processor,
                },
                fusion: None,
                fusion_frames: None,
            });
        }
        let clip = crate::checkpoint::hf::load_model(dir, device)?;
        let preprocess = match preprocess {
            Some(p) => p,
            None => crate::checkpoint::preprocessor::model_preprocess(dir)?,
        };
        let tower = ImageTower::Clip {
            model: Box::new(clip),
            preprocess,
        };
        Ok(match crate::checkpoint::hf::load_fusion(dir, device)? {
            Some((fusion, info)) => Self {
                tower,
                fusion: Some(fusion),
                fusion_frames: info.frames,
            },
            None => Self {
                tower,
                fusion: None,
                fusion_frames: None,
            },
        })
    }

    /// Frames per snippet when none are asked for: the clip length the temporal
    /// transformer was trained on, else the centre frame.
    pub fn default_frames_per_snippet(&self) -> u64 {
        match &self.fusion {
            Some(f) => self.fusion_frames.unwrap_or(f.config().max_frames) as u64,
            None => 1,
        }
    }

    /// A temporal transformer has position embeddings for at most `max_frames` frames.
    pub fn check_frames_per_snippet(&self, m: u64) -> Result<()> {
        if let Some(f) = &self.fusion
            && m > f.config().max_frames as u64
        {
            bail!(
                "{m} frames per snippet: the model's temporal transformer takes at most {}",
                f.config().max_frames
            );
        }
        Ok(())
    }
}

/// Centered moving average over `w` values (w ≤ 1: unchanged).
pub fn smooth(x: &[f32], w: usize) -> Vec<f32> {
    if w <= 1 {
        return x.to_vec();
    }
    let h = w / 2;
    (0..x.len())
        .map(|i| {
            let (a, b) = (i.saturating_sub(h), (i + w - h).min(x.len()));
            x[a..b].iter().sum::<f32>() / (b - a) as f32
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct SnippetResult {
    pub index: usize,
    pub start_frame: u64,
    pub end_frame: u64,
    pub score: f32,
    pub class: String,
    pub probabilities: Vec<f32>,
}

#[derive(Debug, Serialize)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
    pub start_frame: u64,
    pub end_frame: u64,
    pub class: String,
    pub score: f32,
    pub peak_frame: u64,
    pub thumbnail: Option<String>,
    /// The region that drives the score on the peak frame, `[x1, y1, x2, y2]` in [0, 1].
    pub region: Option<[f32; 4]>,
}

#[derive(Debug, Serialize)]
pub struct DetectResult {
    pub video: String,
    pub fps: f64,
    pub frame_count: u64,
    pub stride: u64,
    pub classes: Vec<String>,
    pub predicted_class: String,
    pub max_score: f32,
    pub frame_scores: Vec<f32>,
    pub snippets: Vec<SnippetResult>,
    pub top_segments: Vec<Segment>,
}

/// `fgclip detect` options.
pub struct DetectOptions {
    pub stride: u64,
    /// Frames per snippet; none: [`VideoModel::default_frames_per_snippet`].
    pub per_snippet: Option<u64>,
    pub smooth: usize,
    pub threshold: f32,
    pub top_k: usize,
    pub batch_size: usize,
    pub thumbnails: bool,
}

/// Runs detection on one video and writes `<stem>.json`, `.csv`, `.png`, `.svg` and the
/// top segments' thumbnails into `out`.
#[allow(clippy::too_many_arguments)]
pub fn detect_video(
    model: &VideoModel,
    head: &ZeroShotHead,
    names: &[String],
    video: &Path,
    out: &Path,
    opts: &DetectOptions,
    truth: Option<&VideoTruth>,
    device: &Device,
    progress: &ProgressBar,
) -> Result<DetectResult> {
    let info = probe(video, true)?;
    if info.frame_count == 0 {
        bail!("{}: no video frames", video.display());
    }
    let layout = Snippets {
        frames: info.frame_count,
        stride: opts.stride.max(1),
        per_snippet: opts
            .per_snippet
            .unwrap_or_else(|| model.default_frames_per_snippet())
            .max(1),
    };
    let n = layout.count();
    progress.set_length((0..n).map(|k| layout.frames_of(k).len() as u64).sum());
    let p = model.tower.embed_dim();
    let emb = snippet_embeddings(model, video, &layout, opts.batch_size, device, progress)?;
    let probs =
        host_f32(head.probabilities(Tensor::<2>::from_data(TensorData::new(emb, [n, p]), device)))?;
    let c = names.len();
    let raw: Vec<(f32, usize)> = probs.chunks(c).map(|r| head.score_and_class(r)).collect();
    let scores = smooth(&raw.iter().map(|r| r.0).collect::<Vec<_>>(), opts.smooth);
    let snippets: Vec<SnippetResult> = (0..n)
        .map(|k| {
            let (s, e) = layout.span(k);
            SnippetResult {
                index: k,
                start_frame: s,
                end_frame: e,
                score: scores[k],
                class: names[raw[k].1].clone(),
                probabilities: probs[k * c..(k + 1) * c].to_vec(),
            }
        })
        .collect();
    let mut frame_scores = Vec::with_capacity(info.frame_count as usize);
    for (k, sc) in scores.iter().enumerate() {
        let (s, e) = layout.span(k);
        frame_scores.extend(std::iter::repeat_n(*sc, (e - s + 1) as usize));
    }
    frame_scores.truncate(info.frame_count as usize);

    // Segments: runs of snippets at or above the threshold (or the best snippet).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut k = 0;
    while k < n {
        if scores[k] >= opts.threshold {
            let start = k;
            while k + 1 < n && scores[k + 1] >= opts.threshold {
                k += 1;
            }
            runs.push((start, k));
        }
        k += 1;
    }
    if runs.is_empty()
        && let Some(best) = (0..n).max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
    {
        runs.push((best, best));
    }
    let mut segments: Vec<Segment> = runs
        .into_iter()
        .map(|(a, b)| {
            let peak = (a..=b)
                .max_by(|&x, &y| scores[x].total_cmp(&scores[y]))
                .unwrap_or(a);
            // The class with the most probability mass over the run.
            let class = (1..c)
                .max_by(|&x, &y| {
                    let m = |j: usize| (a..=b).map(|k| probs[k * c + j]).sum::<f32>();
                    m(x).total_cmp(&m(y))
                })
                .unwrap_or(1);
            let (sf, _) = layout.span(a);
            let (_, ef) = layout.span(b);
            Segment {
                start_s: sf as f64 / info.fps,
                end_s: (ef + 1) as f64 / info.fps,
                start_frame: sf,
                end_frame: ef,
                class: names[class].clone(),
                score: scores[peak],
                peak_frame: layout.frames_of(peak)[layout.frames_of(peak).len() / 2],
                thumbnail: None,
                region: None,
            }
        })
        .collect();
    segments.sort_by(|x, y| y.score.total_cmp(&x.score));
    segments.truncate(opts.top_k);

    let stem = video
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "video".into());
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    if opts.thumbnails {
        for (i, seg) in segments.iter_mut().enumerate() {
            let class = names.iter().position(|x| *x == seg.class).unwrap_or(1);
            let path = out.join(format!("{stem}_segment{}.png", i + 1));
            if let Some(region) = thumbnail(
                &model.tower,
                head,
                video,
                seg.peak_frame,
                class,
                &path,
                device,
            )? {
                seg.thumbnail = Some(
                    path.file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                seg.region = Some(region);
            }
        }
    }
    let max_score = scores.iter().copied().fold(f32::MIN, f32::max);
    let predicted_class = if max_score >= opts.threshold {
        segments
            .first()
            .map_or_else(|| names[0].clone(), |s| s.class.clone())
    } else {
        names[0].clone()
    };
    let result = DetectResult {
        video: video.display().to_string(),
        fps: info.fps,
        frame_count: info.frame_count,
        stride: layout.stride,
        classes: names.to_vec(),
        predicted_class,
        max_score,
        frame_scores,
        snippets,
        top_segments: segments,
    };
    write_outputs(&result, out, &stem, truth, opts.threshold)?;
    Ok(result)
}

fn write_outputs(
    r: &DetectResult,
    out: &Path,
    stem: &str,
    truth: Option<&VideoTruth>,
    threshold: f32,
) -> Result<()> {
    use crate::io::write_atomic;
    write_atomic(
        &out.join(format!("{stem}.json")),
        serde_json::to_string(r)?.as_bytes(),
    )?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "snippet",
        "start_frame",
        "end_frame",
        "start_s",
        "end_s",
        "score",
        "class",
    ]
    .map(String::from)
    .to_vec();
    header.extend(r.classes.iter().map(|c| format!("p_{c}")));
    w.write_record(&header)?;
    for s in &r.snippets {
        let mut row = vec![
            s.index.to_string(),
            s.start_frame.to_string(),
            s.end_frame.to_string(),
            format!("{:.3}", s.start_frame as f64 / r.fps),
            format!("{:.3}", (s.end_frame + 1) as f64 / r.fps),
            format!("{:.6}", s.score),
            s.class.clone(),
        ];
        row.extend(s.probabilities.iter().map(|p| format!("{p:.6}")));
        w.write_record(&row)?;
    }
    let csv = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing CSV: {e}"))?;
    write_atomic(&out.join(format!("{stem}.csv")), &csv)?;
    let class_index = |name: &str| r.classes.iter().position(|c| c == name).unwrap_or(0);
    let snippets: Vec<(f64, f64, f32, usize)> = r
        .snippets
        .iter()
        .map(|s| {
            (
                s.start_frame as f64 / r.fps,
                (s.end_frame + 1) as f64 / r.fps,
                s.score,
                class_index(&s.class),
            )
        })
        .collect();
    let truth_s: Vec<(f64, f64)> = truth
        .map(|t| {
            t.spans
                .iter()
                .map(|&(a, b)| (a as f64 / r.fps, (b + 1) as f64 / r.fps))
                .collect()
        })
        .unwrap_or_default();
    let title = format!("{stem}: {} (max {:.2})", r.predicted_class, r.max_score);
    let plot = ScorePlot {
        title: &title,
        snippets: &snippets,
        class_names: &r.classes,
        truth: &truth_s,
        duration_s: r.frame_count as f64 / r.fps,
        threshold,
    };
    plot.png()?.save_png(&out.join(format!("{stem}.png")))?;
    write_svg(&out.join(format!("{stem}.svg")), &plot.svg())?;
    Ok(())
}

/// A thumbnail of `frame` with the heat map of its dense patch similarity to `class`
/// and the box of the strongest cells; returns that box, normalised.
fn thumbnail(
    tower: &ImageTower,
    head: &ZeroShotHead,
    video: &Path,
    frame: u64,
    class: usize,
    path: &Path,
    device: &Device,
) -> Result<Option<[f32; 4]>> {
    let mut reader = VideoReader::open(video)?;
    let mut got = None;
    reader.read_frames(&[frame], |f| {
        got = Some(f);
        Ok(())
    })?;
    let Some(f) = got else { return Ok(None) };
    thumbnail_of_frame(tower, head, &f, class, path, device)
}

/// [`thumbnail`] of a decoded frame (a live source's).
pub fn thumbnail_of_frame(
    tower: &ImageTower,
    head: &ZeroShotHead,
    f: &crate::data::video::RgbFrame,
    class: usize,
    path: &Path,
    device: &Device,
) -> Result<Option<[f32; 4]>> {
    let Some((sim, rows, cols)) = tower.class_map(f, head, class, device)? else {
        return Ok(None);
    };
    let (lo, hi) = sim
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let map: Vec<f32> = sim
        .iter()
        .map(|v| if hi > lo { (v - lo) / (hi - lo) } else { 0.0 })
        .collect();
    // Thumbnails are at most 480 px wide.
    let (w, h) = (f.width as usize, f.height as usize);
    let tw = w.min(480);
    let th = (h * tw / w.max(1)).max(1);
    let data = crate::data::resize::resize_rgb24(&f.data, w, h, tw, th);
    let mut canvas = Canvas::from_rgb(tw, th, data);
    let b = heat_overlay(&mut canvas, &map, (rows, cols), 0.7);
    canvas.save_png(path)?;
    Ok(b.map(|(x0, y0, x1, y1)| {
        [
            x0 as f32 / tw as f32,
            y0 as f32 / th as f32,
            x1 as f32 / tw as f32,
            y1 as f32 / th as f32,
        ]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_is_centred_and_shrinks_at_the_ends() {
        assert_eq!(smooth(&[0.0, 3.0, 0.0, 3.0], 1), vec![0.0, 3.0, 0.0, 3.0]);
        assert_eq!(smooth(&[0.0, 3.0, 0.0, 3.0], 3), vec![1.5, 1.0, 2.0, 1.5]);
    }
}
