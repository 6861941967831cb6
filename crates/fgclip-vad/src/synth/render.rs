//! Drawing the synthetic street scenes frame by frame (pavement, road, lighting, people,
//! cars and the anomalous events) and encoding them, with each frame's true boxes of the
//! event and of one walking person.

use std::path::Path;

use anyhow::Result;

use super::{FPS, HEIGHT, WIDTH};
use crate::data::batch::Rng;
use crate::data::encode::{Codec, EncodeOptions, VideoWriter};

#[derive(Clone, Copy)]
struct Person {
    x: f32,
    y: f32,
    vx: f32,
    shirt: [u8; 3],
}

#[derive(Clone, Copy)]
struct Car {
    x: f32,
    y: f32,
    vx: f32,
    colour: [u8; 3],
}

/// An axis-aligned box in pixels (x0, y0, x1, y1), clipped to the frame.
pub(super) type PxBox = (f32, f32, f32, f32);

fn clip_box(b: PxBox) -> PxBox {
    (
        b.0.clamp(0.0, WIDTH as f32),
        b.1.clamp(0.0, HEIGHT as f32),
        b.2.clamp(0.0, WIDTH as f32),
        b.3.clamp(0.0, HEIGHT as f32),
    )
}

fn union(a: PxBox, b: PxBox) -> PxBox {
    (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3))
}

/// Pixels per unit of the people's figures: a standing person is 9 × 24 px, a lying
/// one 24 × 9, large enough to show their pose at the demo model's 96 px input (the
/// frame is stretched to 96 × 96 there, cut into 12 px patches).
const P: f32 = 1.5;
const SKIN: [u8; 3] = [230, 190, 160];
const TROUSERS: [u8; 3] = [40, 40, 70];

struct Frame {
    data: Vec<u8>,
}

impl Frame {
    fn fill(&mut self, b: PxBox, c: [u8; 3]) {
        let (x0, y0, x1, y1) = clip_box(b);
        for y in y0 as usize..(y1.ceil() as usize).min(HEIGHT) {
            for x in x0 as usize..(x1.ceil() as usize).min(WIDTH) {
                self.data[(y * WIDTH + x) * 3..(y * WIDTH + x) * 3 + 3].copy_from_slice(&c);
            }
        }
    }

    /// A standing person, feet at y: head, shirt, legs; `P` pixels a unit, 6 units wide
    /// and 16 tall (9 × 24 px).
    fn person(&mut self, x: f32, y: f32, shirt: [u8; 3]) -> PxBox {
        self.upper_body(x, y, shirt);
        self.fill((x - 3.0 * P, y - 5.0 * P, x + 3.0 * P, y), TROUSERS);
        (x - 3.0 * P, y - 16.0 * P, x + 3.0 * P, y)
    }

    /// Head and shirt of a standing or running person, feet at y.
    fn upper_body(&mut self, x: f32, y: f32, shirt: [u8; 3]) {
        self.fill((x - 2.0 * P, y - 16.0 * P, x + 2.0 * P, y - 12.0 * P), SKIN);
        self.fill((x - 3.0 * P, y - 12.0 * P, x + 3.0 * P, y - 5.0 * P), shirt);
    }

    /// A running person: the legs apart, an inverted V instead of one block.
    fn running(&mut self, x: f32, y: f32, shirt: [u8; 3]) -> PxBox {
        self.upper_body(x, y, shirt);
        self.fill(
            (x - 2.0 * P, y - 5.0 * P, x + 2.0 * P, y - 3.0 * P),
            TROUSERS,
        );
        self.fill((x - 6.0 * P, y - 3.0 * P, x - 2.0 * P, y), TROUSERS);
        self.fill((x + 2.0 * P, y - 3.0 * P, x + 6.0 * P, y), TROUSERS);
        (x - 6.0 * P, y - 16.0 * P, x + 6.0 * P, y)
    }

    fn lying(&mut self, x: f32, y: f32, shirt: [u8; 3]) -> PxBox {
        self.fill((x - 8.0 * P, y - 5.0 * P, x - 4.0 * P, y - 1.0 * P), SKIN);
        self.fill((x - 4.0 * P, y - 6.0 * P, x + 3.0 * P, y), shirt);
        self.fill(
            (x + 3.0 * P, y - 5.0 * P, x + 8.0 * P, y - 1.0 * P),
            TROUSERS,
        );
        (x - 8.0 * P, y - 6.0 * P, x + 8.0 * P, y)
    }

    /// Two people fighting, visible in a single frame: facing each other, one punching
    /// (an arm straight out to the other's head), the other with a fist raised.
    fn fighting(&mut self, x: f32, y: f32, j: [f32; 4], shirts: ([u8; 3], [u8; 3])) -> PxBox {
        let (ax, ay) = (x - 5.0 * P + j[0], y + j[1]);
        let (bx, by) = (x + 5.0 * P + j[2], y + j[3]);
        let a = self.person(ax, ay, shirts.0);
        let b = self.person(bx, by, shirts.1);
        let punch = (ax + 3.0 * P, ay - 12.0 * P, bx - 1.0 * P, ay - 10.0 * P);
        let raised = (bx + 3.0 * P, by - 19.0 * P, bx + 5.0 * P, by - 10.0 * P);
        self.fill(punch, SKIN);
        self.fill(raised, SKIN);
        union(union(a, b), union(punch, raised))
    }
    fn car(&mut self, x: f32, y: f32, c: [u8; 3]) -> PxBox {
        self.fill((x - 11.0, y - 8.0, x + 11.0, y - 2.0), c);
        self.fill(
            (x - 6.0, y - 12.0, x + 5.0, y - 8.0),
            [c[0] / 2 + 60, c[1] / 2 + 60, c[2] / 2 + 80],
        );
        self.fill((x - 9.0, y - 2.0, x - 5.0, y), [20, 20, 20]);
        self.fill((x + 5.0, y - 2.0, x + 9.0, y), [20, 20, 20]);
        (x - 11.0, y - 12.0, x + 11.0, y)
    }
}

fn background(rng: &mut Rng) -> (Vec<u8>, f32) {
    // Lighting varies between videos, but not so much that the scene outweighs the event.
    let light = 0.9 + (rng.below(20) as f32) / 100.0;
    let tint = [
        rng.below(8) as f32,
        rng.below(8) as f32,
        rng.below(8) as f32,
    ];
    let mut bg = vec![0u8; WIDTH * HEIGHT * 3];
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let tex = (((x * 7) ^ (y * 13)) % 17) as f32;
            let base = if (58..80).contains(&y) {
                [70.0, 70.0, 75.0] // the road
            } else if y < 20 {
                [120.0, 110.0, 100.0] // building wall
            } else {
                [140.0, 135.0, 120.0] // pavement
            };
            for c in 0..3 {
                let v = (base[c] + tex + tint[c]) * light;
                bg[(y * WIDTH + x) * 3 + c] = v.clamp(0.0, 255.0) as u8;
            }
        }
        if (68..70).contains(&y) {
            for x in (0..WIDTH).filter(|x| x % 16 < 8) {
                bg[(y * WIDTH + x) * 3..(y * WIDTH + x) * 3 + 3].copy_from_slice(&[200, 200, 180]);
            }
        }
    }
    (bg, light)
}

fn shirt(rng: &mut Rng) -> [u8; 3] {
    const SHIRTS: [[u8; 3]; 6] = [
        [200, 40, 40],
        [40, 90, 200],
        [40, 160, 60],
        [220, 200, 40],
        [150, 60, 170],
        [240, 240, 240],
    ];
    SHIRTS[rng.below(SHIRTS.len() as u64) as usize]
}

fn car_colour(rng: &mut Rng) -> [u8; 3] {
    const CARS: [[u8; 3]; 5] = [
        [30, 60, 160],
        [180, 30, 30],
        [220, 220, 220],
        [30, 30, 30],
        [40, 140, 140],
    ];
    CARS[rng.below(CARS.len() as u64) as usize]
}

/// One generated video: its frames go to `path`; returns, per frame, the anomaly's box
/// (None outside the event) and the box of a normal walking person.
pub(super) struct VideoTruthPx {
    pub(super) event: Vec<Option<PxBox>>,
    pub(super) walker: Vec<Option<PxBox>>,
}

pub(super) fn render_video(
    path: &Path,
    class: Option<usize>,
    event: (usize, usize),
    frames: usize,
    seed: u64,
) -> Result<VideoTruthPx> {
    let mut rng = Rng::new(seed);
    let (bg, _) = background(&mut rng);
    let mut people: Vec<Person> = (0..2 + rng.below(3) as usize)
        .map(|_| Person {
            x: rng.below(WIDTH as u64) as f32,
            y: 26.0 + rng.below(28) as f32,
            vx: if rng.below(3) == 0 {
                0.0
            } else {
                (rng.below(20) as f32 - 10.0) / 10.0
            },
            shirt: shirt(&mut rng),
        })
        .collect();
    let mut cars: Vec<Car> = (0..1 + rng.below(2) as usize)
        .map(|i| Car {
            x: rng.below(WIDTH as u64) as f32,
            y: if i % 2 == 0 { 67.0 } else { 78.0 },
            vx: if i % 2 == 0 {
                2.0 + rng.below(20) as f32 / 10.0
            } else {
                -2.0 - rng.below(20) as f32 / 10.0
            },
            colour: car_colour(&mut rng),
        })
        .collect();
    // The event's actors.
    let ex = 30.0 + rng.below(68) as f32;
    let ey = 34.0 + rng.below(18) as f32;
    let (s1, s2) = (shirt(&mut rng), shirt(&mut rng));
    let opts = EncodeOptions {
        codec: Codec::H264,
        fps: FPS,
        gop: 20,
        b_frames: 2,
        crf: 18,
    };
    let mut writer = VideoWriter::create(path, WIDTH as u32, HEIGHT as u32, opts)?;
    let mut truth = VideoTruthPx {
        event: Vec::with_capacity(frames),
        walker: Vec::with_capacity(frames),
    };
    for t in 0..frames {
        let mut f = Frame { data: bg.clone() };
        for c in &mut cars {
            c.x += c.vx;
            if c.x > WIDTH as f32 + 15.0 {
                c.x = -15.0;
            } else if c.x < -15.0 {
                c.x = WIDTH as f32 + 15.0;
            }
            f.car(c.x, c.y, c.colour);
        }
        let mut walker = None;
        for (i, p) in people.iter_mut().enumerate() {
            p.x += p.vx;
            if p.x > WIDTH as f32 + 4.0 {
                p.x = -4.0;
            } else if p.x < -4.0 {
                p.x = WIDTH as f32 + 4.0;
            }
            let b = f.person(p.x, p.y, p.shirt);
            if i == 0 && b.0 >= 0.0 && b.2 <= WIDTH as f32 {
                walker = Some(b);
            }
        }
        let active = class.is_some() && (event.0..=event.1).contains(&t);
        let k = t.saturating_sub(event.0) as f32;
        let ev = if active {
            match class {
                Some(0) => {
                    // Fighting: two people punching, jittering.
                    let j = [
                        rng.below(5) as f32 - 2.0,
                        rng.below(3) as f32 - 1.0,
                        rng.below(5) as f32 - 2.0,
                        rng.below(3) as f32 - 1.0,
                    ];
                    Some(f.fighting(ex, ey, j, (s1, s2)))
                }
                Some(1) => Some(f.lying(ex, ey, s1)),
                Some(2) => {
                    // Fire: a growing, flickering orange disc.
                    let r = (3.0 + k * 0.6).min(16.0);
                    let mut b = (ex, ey, ex, ey);
                    for dy in -(r as i32)..=(r as i32) {
                        for dx in -(r as i32)..=(r as i32) {
                            let d = ((dx * dx + dy * dy) as f32).sqrt();
                            if d <= r {
                                let flick = rng.below(60) as u8;
                                let c = if d < r * 0.5 {
                                    [255, 220 - flick / 2, 80]
                                } else {
                                    [250, 120 + flick, 20]
                                };
                                let (x, y) = (ex + dx as f32, ey + dy as f32);
                                f.fill((x, y, x + 1.0, y + 1.0), c);
                                b = union(b, (x, y, x + 1.0, y + 1.0));
                            }
                        }
                    }
                    Some(b)
                }
                Some(3) => {
                    // Theft: the thief takes the bag from a standing person, then runs.
                    let victim = f.person(ex, ey, s2);
                    let half = ((event.1 - event.0) / 3).max(1) as f32;
                    let tx = if k < half {
                        ex + 7.0 * P
                    } else {
                        ex + 7.0 * P + (k - half) * 4.0
                    };
                    let thief = if k < half {
                        f.person(tx, ey, s1)
                    } else {
                        f.running(tx, ey, s1)
                    };
                    let bag = (tx + 3.0 * P, ey - 11.0 * P, tx + 8.0 * P, ey - 5.0 * P);
                    f.fill(bag, [120, 70, 20]);
                    let thief = union(thief, bag);
                    Some(if k < half {
                        union(victim, thief)
                    } else {
                        thief
                    })
                }
                Some(_) => {
                    // Road accident: two cars meet and stay crashed.
                    let meet = ((event.1 - event.0) / 3).max(1) as f32;
                    let off = ((meet - k).max(0.0)) * 3.0 + 10.0;
                    let a = f.car(ex - off, 72.0, [180, 30, 30]);
                    let b = f.car(ex + off, 74.0, [30, 60, 160]);
                    if k >= meet {
                        // Debris: a scatter of bright fragments.
                        for _ in 0..6 {
                            let (dx, dy) = (rng.below(20) as f32 - 10.0, rng.below(6) as f32);
                            f.fill(
                                (ex + dx, 64.0 + dy, ex + dx + 1.0, 65.0 + dy),
                                [250, 250, 200],
                            );
                        }
                    }
                    Some(union(a, b))
                }
                None => None,
            }
        } else {
            None
        };
        truth.event.push(ev.map(clip_box));
        truth.walker.push(walker.map(clip_box));
        writer.write_rgb(&f.data)?;
    }
    writer.finish()?;
    Ok(truth)
}
