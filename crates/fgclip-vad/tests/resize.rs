//! The frame resize against Pillow's BICUBIC and BILINEAR (tests/fixtures/resize, made by
//! tools/make_resize_fixture.py with Pillow 13): bit-exact down, up and mixed.

mod common;

use common::fixtures;
use fgclip_vad::data::npy::read_f32;
use fgclip_vad::data::resize::{Filter, resize_rgb24, resize_rgb24_with};

#[test]
fn resize_equals_pillow_bicubic() {
    let dir = fixtures().join("resize");
    let (shape, src) = read_f32(&dir.join("src_61x47.npy")).unwrap();
    assert_eq!(shape, [47, 61, 3]);
    let src: Vec<u8> = src.iter().map(|&v| v as u8).collect();
    for (w, h) in [(16, 16), (224, 224), (30, 90)] {
        let (shape, want) = read_f32(&dir.join(format!("pil_{w}x{h}.npy"))).unwrap();
        assert_eq!(shape, [h, w, 3]);
        let got = resize_rgb24(&src, 61, 47, w, h);
        let want: Vec<u8> = want.iter().map(|&v| v as u8).collect();
        assert_eq!(got, want, "{w}x{h}");
    }
}

#[test]
fn resize_equals_pillow_bilinear() {
    let dir = fixtures().join("resize");
    let (_, src) = read_f32(&dir.join("src_61x47.npy")).unwrap();
    let src: Vec<u8> = src.iter().map(|&v| v as u8).collect();
    for (w, h) in [(16, 16), (224, 224), (30, 90)] {
        let (shape, want) = read_f32(&dir.join(format!("pil_bilinear_{w}x{h}.npy"))).unwrap();
        assert_eq!(shape, [h, w, 3]);
        let got = resize_rgb24_with(&src, 61, 47, w, h, Filter::Bilinear);
        let want: Vec<u8> = want.iter().map(|&v| v as u8).collect();
        assert_eq!(got, want, "{w}x{h}");
        // Not the bicubic bytes (the two filters differ on this noise).
        assert_ne!(got, resize_rgb24(&src, 61, 47, w, h), "{w}x{h}");
    }
}
