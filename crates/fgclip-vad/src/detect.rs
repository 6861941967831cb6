//! Zero-shot anomaly detection on videos (`fgclip detect`) and snippet features for
//! VadCLIP-style pipelines (`fgclip extract`).
//!
//! A video is cut into snippets of `stride` frames; each is represented by its centre
//! frame's embedding (or the mean over several of its frames), scored against the prompt
//! set's classes, and its score repeated over its frames. Only the snippet frames are
//! converted and resized, and embeddings are computed in batches, so memory stays flat on
//! hour-long videos.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use fgclip_core::model::normalize;
use fgclip_core::zeroshot::{ZeroShotHead, class_embedding, score_and_class};
use fgclip_core::{ClipModel, Tokenizer};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::data::batch::normalize as normalize_pixels;
use crate::data::video::{VideoReader, probe, resize_rgb};
use crate::eval::VideoTruth;
use crate::inference::host_f32;
use crate::plot::{Canvas, ScorePlot, heat_overlay, write_svg};

/// A prompt file: one normal class and the anomaly classes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromptSet {
    #[serde(default)]
    pub name: String,
    pub normal: PromptClass,
    pub classes: Vec<PromptClass>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromptClass {
    pub name: String,
    pub templates: Vec<String>,
}

pub const UCF_CRIME_PROMPTS: &str = include_str!("../../../prompts/ucf-crime.json");
pub const XD_VIOLENCE_PROMPTS: &str = include_str!("../../../prompts/xd-violence.json");

impl PromptSet {
    /// `ucf-crime`, `xd-violence`, or the path of a prompt file.
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        let (text, origin) = match name_or_path {
            "ucf-crime" => (
                UCF_CRIME_PROMPTS.to_string(),
                "built-in ucf-crime".to_string(),
            ),
            "xd-violence" => (
                XD_VIOLENCE_PROMPTS.to_string(),
                "built-in xd-violence".to_string(),
            ),
            path => (
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading prompt file {path}"))?,
                path.to_string(),
            ),
        };
        let set: PromptSet =
            serde_json::from_str(&text).with_context(|| format!("{origin}: not a prompt set"))?;
        if set.classes.is_empty() {
            bail!("{origin}: no anomaly classes");
        }
        for c in std::iter::once(&set.normal).chain(&set.classes) {
            if c.templates.iter().all(|t| t.trim().is_empty()) {
                bail!("{origin}: class `{}` has no template", c.name);
            }
        }
        Ok(set)
    }

    /// Class names, "Normal" (or the normal class's name) first.
    pub fn names(&self) -> Vec<String> {
        std::iter::once(self.normal.name.clone())
            .chain(self.classes.iter().map(|c| c.name.clone()))
            .collect()
    }
}

/// The zero-shot head of a prompt set for a model.
pub fn build_head(
    model: &ClipModel,
    tokenizer: &Tokenizer,
    prompts: &PromptSet,
    scale: Option<f64>,
    device: &Device,
) -> Result<ZeroShotHead> {
    let l = model.config().text_config.max_position_embeddings;
    let mut classes = Vec::new();
    for c in std::iter::once(&prompts.normal).chain(&prompts.classes) {
        let texts: Vec<&String> = c
            .templates
            .iter()
            .filter(|t| !t.trim().is_empty())
            .collect();
        let ids = tokenizer.tokenize_batch(&texts, l);
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [texts.len(), l]), device);
        classes.push(class_embedding(model.encode_text(ids)));
    }
    let scale = match scale {
        Some(s) => s,
        None => host_f32(model.logit_scale.val().exp())?
            .first()
            .map_or(100.0, |&s| f64::from(s).min(100.0)),
    };
    Ok(ZeroShotHead::new(classes, scale))
}

/// Snippet layout of a video.
#[derive(Clone, Copy, Debug)]
pub struct Snippets {
    pub frames: u64,
    pub stride: u64,
    /// Frames per snippet averaged (1 = the centre frame).
    pub per_snippet: u64,
}

impl Snippets {
    pub fn count(&self) -> usize {
        self.frames.div_ceil(self.stride.max(1)) as usize
    }

    /// First and last frame of snippet `k`.
    pub fn span(&self, k: usize) -> (u64, u64) {
        let s = k as u64 * self.stride;
        (s, (s + self.stride - 1).min(self.frames.saturating_sub(1)))
    }

    /// The frames representing snippet `k`: its centre, or `per_snippet` evenly spaced.
    pub fn frames_of(&self, k: usize) -> Vec<u64> {
        let (s, e) = self.span(k);
        let len = e - s + 1;
        let m = self.per_snippet.clamp(1, len);
        (0..m).map(|j| s + ((2 * j + 1) * len) / (2 * m)).collect()
    }
}

/// Where [`snippet_embeddings_timed`] spent its time, in seconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SnippetTiming {
    /// Decoding, RGB conversion, resizing and normalising on the CPU (the decode thread's
    /// busy time, not counting waits for the model to take a batch).
    pub decode_s: f64,
    /// The image tower, including reading the embeddings back.
    pub embed_s: f64,
    /// The model side waiting for the decoder.
    pub wait_s: f64,
    /// Wall time of the whole pipeline.
    pub total_s: f64,
}

/// Normalised snippet embeddings (n, P), row-major, decoding only the snippet frames.
pub fn snippet_embeddings(
    model: &ClipModel,
    video: &Path,
    layout: &Snippets,
    batch_size: usize,
    device: &Device,
    progress: &ProgressBar,
) -> Result<Vec<f32>> {
    snippet_embeddings_timed(model, video, layout, batch_size, device, progress).map(|(e, _)| e)
}

/// [`snippet_embeddings`] and where its time went. A decode thread prepares the next
/// batches while the model embeds the current one, so on a GPU the wall time is about the
/// decoder's alone.
pub fn snippet_embeddings_timed(
    model: &ClipModel,
    video: &Path,
    layout: &Snippets,
    batch_size: usize,
    device: &Device,
    progress: &ProgressBar,
) -> Result<(Vec<f32>, SnippetTiming)> {
    use std::time::Instant;
    let start = Instant::now();
    let s = model.config().vision_config.image_size;
    let p = model.config().projection_dim;
    let n = layout.count();
    let wanted: Vec<u64> = (0..n).flat_map(|k| layout.frames_of(k)).collect();
    let mut owner: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for k in 0..n {
        for f in layout.frames_of(k) {
            owner.entry(f).or_default().push(k);
        }
    }
    let mut sums = vec![0f32; n * p];
    let mut counts = vec![0u32; n];
    let mut timing = SnippetTiming::default();
    type Pending = Vec<(u64, Vec<f32>)>;
    // Two batches in flight: enough to keep the model busy, little memory.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Pending>(2);
    let batch_size = batch_size.max(1);
    let decoded = std::thread::scope(|scope| -> Result<f64> {
        let decoder = scope.spawn(move || -> Result<f64> {
            let t0 = Instant::now();
            let mut blocked = 0.0;
            let mut pending: Pending = Vec::with_capacity(batch_size);
            let mut send = |batch: Pending| -> Result<()> {
                let t = Instant::now();
                // A closed channel means the model side failed; its error is reported.
                let r = tx
                    .send(batch)
                    .map_err(|_| anyhow::anyhow!("model side stopped"));
                blocked += t.elapsed().as_secs_f64();
                r
            };
            let mut reader = VideoReader::open(video)?;
            reader.read_frames(&wanted, |f| {
                let small = resize_rgb(&f, s as u32)?;
                pending.push((f.index, normalize_pixels(&small.data, s)));
                if pending.len() >= batch_size {
                    send(std::mem::take(&mut pending))?;
                }
                Ok(())
            })?;
            if !pending.is_empty() {
                send(pending)?;
            }
            Ok(t0.elapsed().as_secs_f64() - blocked)
        });
        let mut model_side = || -> Result<()> {
            loop {
                let t = Instant::now();
                let Ok(batch) = rx.recv() else {
                    return Ok(());
                };
                timing.wait_s += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let b = batch.len();
                let pixels: Vec<f32> = batch
                    .iter()
                    .flat_map(|(_, px)| px.iter().copied())
                    .collect();
                let x = Tensor::<4>::from_data(TensorData::new(pixels, [b, 3, s, s]), device);
                let e = host_f32(normalize(model.encode_image(x, false).embeds))?;
                for (i, (frame, _)) in batch.iter().enumerate() {
                    for &k in owner.get(frame).map(Vec::as_slice).unwrap_or(&[]) {
                        for d in 0..p {
                            sums[k * p + d] += e[i * p + d];
                        }
                        counts[k] += 1;
                    }
                }
                timing.embed_s += t.elapsed().as_secs_f64();
                progress.inc(b as u64);
            }
        };
        let model_result = model_side();
        // Unblocks a decoder waiting to send after a model failure.
        drop(rx);
        let decode_result = decoder
            .join()
            .map_err(|_| anyhow::anyhow!("{}: the decode thread panicked", video.display()))?;
        model_result?;
        decode_result
    })?;
    timing.decode_s = decoded;
    // Snippets past the decodable end take the last decoded snippet's embedding.
    let mut last: Option<usize> = None;
    for k in 0..n {
        if counts[k] > 0 {
            let c = counts[k] as f32;
            let row = &mut sums[k * p..(k + 1) * p];
            let norm = row
                .iter()
                .map(|v| (v / c) * (v / c))
                .sum::<f32>()
                .sqrt()
                .max(1e-12);
            row.iter_mut().for_each(|v| *v = *v / c / norm);
            last = Some(k);
        } else if let Some(j) = last {
            let row: Vec<f32> = sums[j * p..(j + 1) * p].to_vec();
            sums[k * p..(k + 1) * p].copy_from_slice(&row);
        }
    }
    if last.is_none() {
        bail!("{}: no frame could be decoded", video.display());
    }
    timing.total_s = start.elapsed().as_secs_f64();
    Ok((sums, timing))
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
    pub per_snippet: u64,
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
    model: &ClipModel,
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
        per_snippet: opts.per_snippet.max(1),
    };
    let n = layout.count();
    progress.set_length((0..n).map(|k| layout.frames_of(k).len() as u64).sum());
    let p = model.config().projection_dim;
    let emb = snippet_embeddings(model, video, &layout, opts.batch_size, device, progress)?;
    let probs =
        host_f32(head.probabilities(Tensor::<2>::from_data(TensorData::new(emb, [n, p]), device)))?;
    let c = names.len();
    let raw: Vec<(f32, usize)> = probs.chunks(c).map(score_and_class).collect();
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
            if let Some(region) =
                thumbnail(model, head, video, seg.peak_frame, class, &path, device)?
            {
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
    use crate::checkpoint::safetensors_io::write_atomic;
    write_atomic(
        &out.join(format!("{stem}.json")),
        serde_json::to_string(r)?.as_bytes(),
    )?;
    let mut csv = String::from("snippet,start_frame,end_frame,start_s,end_s,score,class");
    for c in &r.classes {
        csv.push_str(&format!(",p_{}", c.replace([',', ' '], "_")));
    }
    csv.push('\n');
    for s in &r.snippets {
        csv.push_str(&format!(
            "{},{},{},{:.3},{:.3},{:.6},{}",
            s.index,
            s.start_frame,
            s.end_frame,
            s.start_frame as f64 / r.fps,
            (s.end_frame + 1) as f64 / r.fps,
            s.score,
            s.class.replace(',', "_")
        ));
        for p in &s.probabilities {
            csv.push_str(&format!(",{p:.6}"));
        }
        csv.push('\n');
    }
    write_atomic(&out.join(format!("{stem}.csv")), csv.as_bytes())?;
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
    plot.png().save_png(&out.join(format!("{stem}.png")))?;
    write_svg(&out.join(format!("{stem}.svg")), &plot.svg())?;
    Ok(())
}

/// A thumbnail of `frame` with the heat map of its dense patch similarity to `class`
/// and the box of the strongest cells; returns that box, normalised.
fn thumbnail(
    model: &ClipModel,
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
    let s = model.config().vision_config.image_size;
    let small = resize_rgb(&f, s as u32)?;
    let x = Tensor::<4>::from_data(
        TensorData::new(normalize_pixels(&small.data, s), [1, 3, s, s]),
        device,
    );
    let Some(grid) = model.encode_image(x, true).patch_grid else {
        return Ok(None);
    };
    let g = grid.dims()[1];
    let sim = host_f32(head.class_map(grid, class))?;
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
    let b = heat_overlay(&mut canvas, &map, g, 0.7);
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

/// `fgclip extract`: one `.npy` (snippets, P) of normalised embeddings per video; videos
/// whose `.npy` exists are skipped, so an interrupted run resumes.
pub fn extract_features(
    model: &ClipModel,
    videos: &[PathBuf],
    root: &Path,
    out: &Path,
    layout: (u64, u64),
    batch_size: usize,
    device: &Device,
    progress: &ProgressBar,
    log: &dyn Fn(&str),
) -> Result<(usize, usize, usize)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (mut done, mut skipped, mut failed) = (0, 0, 0);
    let p = model.config().projection_dim;
    for v in videos {
        let path = root.join(v);
        let stem = v
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = out.join(format!("{stem}.npy"));
        if target.is_file() {
            skipped += 1;
            continue;
        }
        let result = probe(&path, true).and_then(|info| {
            let l = Snippets {
                frames: info.frame_count,
                stride: layout.0.max(1),
                per_snippet: layout.1.max(1),
            };
            progress.set_message(stem.clone());
            let e = snippet_embeddings(model, &path, &l, batch_size, device, progress)?;
            crate::data::npy::write_f32(&target, &[l.count(), p], &e)
        });
        match result {
            Ok(()) => done += 1,
            Err(e) => {
                failed += 1;
                progress.suspend(|| log(&format!("warning: {}: {e:#}", path.display())));
            }
        }
    }
    Ok((done, skipped, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_layout() {
        let l = Snippets {
            frames: 100,
            stride: 16,
            per_snippet: 1,
        };
        assert_eq!(l.count(), 7);
        assert_eq!(l.span(6), (96, 99));
        assert_eq!(l.frames_of(0), vec![8]);
        assert_eq!(l.frames_of(6), vec![98]);
        let l = Snippets {
            frames: 100,
            stride: 16,
            per_snippet: 4,
        };
        assert_eq!(l.frames_of(0), vec![2, 6, 10, 14]);
        assert_eq!(l.frames_of(6), vec![96, 97, 98, 99]);
    }

    #[test]
    fn moving_average_is_centred_and_shrinks_at_the_ends() {
        assert_eq!(smooth(&[0.0, 3.0, 0.0, 3.0], 1), vec![0.0, 3.0, 0.0, 3.0]);
        assert_eq!(smooth(&[0.0, 3.0, 0.0, 3.0], 3), vec![1.5, 1.0, 2.0, 1.5]);
    }

    #[test]
    fn built_in_prompt_sets_are_complete() {
        let u = PromptSet::resolve("ucf-crime").unwrap();
        assert_eq!(u.classes.len(), 13);
        assert_eq!(u.names()[0], "Normal");
        assert!(u.names().contains(&"RoadAccidents".to_string()));
        let x = PromptSet::resolve("xd-violence").unwrap();
        let names = x.names();
        for c in [
            "Abuse",
            "Car accident",
            "Explosion",
            "Fighting",
            "Riot",
            "Shooting",
        ] {
            assert!(names.contains(&c.to_string()), "{c}");
        }
        assert!(PromptSet::resolve("/nonexistent.json").is_err());
    }
}
