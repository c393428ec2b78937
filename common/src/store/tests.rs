use super::*;
use std::io::Write;

fn temp_image(len: u64) -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new();
    let path = dir.path().join("disk.img");
    let f = File::create(&path).unwrap();
    f.set_len(len).unwrap();
    (dir, path)
}

/// The image at `path`, opened read-only.
pub(in crate::store) fn open_read_only(path: &Path) -> Image {
    let options = ImageOptions {
        read_only: true,
        ..Default::default()
    };
    Image::open(path, options).unwrap()
}

/// Another program shrinks the image file at `path` to `len` bytes.
fn shrink(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// A scratch directory removed on drop (std only; no extra dependency).
pub(in crate::store) mod tempdir {
    use std::path::{Path, PathBuf};
    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "l2san-store-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn write_then_read_through_map_and_file() {
    let (_d, path) = temp_image(1 << 20);
    let img = Image::open(&path, ImageOptions::default()).unwrap();
    assert_eq!(img.sectors(), 2048);
    img.write_at(512 * 7 + 3, b"hello").unwrap();
    let mut buf = [0u8; 5];
    img.read_at(512 * 7 + 3, &mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    img.flush().unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[512 * 7 + 3..512 * 7 + 8], b"hello");
}

#[test]
fn sync_mode_writes_reach_the_file() {
    let (_d, path) = temp_image(4096);
    let img = Image::open(
        &path,
        ImageOptions {
            read_only: false,
            durability: Durability::Sync,
        },
    )
    .unwrap();
    assert!(!img.write_cache_enabled());
    img.write_at(0, &[7u8; 512]).unwrap();
    assert!(
        !img.flush_if_dirty().unwrap(),
        "sync writes leave nothing to flush"
    );
    assert_eq!(&std::fs::read(&path).unwrap()[..512], &[7u8; 512]);
}

#[test]
fn out_of_range_and_overflow_refused() {
    let img = Image::memory(4096, ImageOptions::default()).unwrap();
    let mut buf = [0u8; 512];
    assert!(matches!(
        img.read_at(4096 - 511, &mut buf),
        Err(StoreError::OutOfRange { .. })
    ));
    assert!(matches!(
        img.read_at(u64::MAX - 10, &mut buf),
        Err(StoreError::OutOfRange { .. })
    ));
    assert!(matches!(
        img.write_at(4096, &buf),
        Err(StoreError::OutOfRange { .. })
    ));
    img.read_at(4096 - 512, &mut buf).unwrap();
}

#[test]
fn read_only_refuses_writes_and_file_is_unchanged() {
    let (_d, path) = temp_image(4096);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all(&[1u8; 4096])
        .unwrap();
    let img = open_read_only(&path);
    assert!(img.read_only());
    assert!(!img.write_cache_enabled());
    assert!(matches!(
        img.write_at(0, &[2u8; 512]),
        Err(StoreError::ReadOnly)
    ));
    assert_eq!(std::fs::read(&path).unwrap(), vec![1u8; 4096]);
}

#[test]
fn bad_images_get_errors_that_name_the_fix() {
    let (_d, path) = temp_image(1000);
    let e = Image::open(&path, ImageOptions::default()).unwrap_err();
    assert!(e.to_string().contains("truncate -s"), "{e}");
    let (_d2, empty) = temp_image(0);
    assert!(matches!(
        Image::open(&empty, ImageOptions::default()),
        Err(OpenError::Empty { .. })
    ));
    assert!(matches!(
        Image::open(Path::new("/nonexistent/disk.img"), ImageOptions::default()),
        Err(OpenError::Open { .. })
    ));
}

#[test]
fn sparse_terabyte_image_opens_without_allocating() {
    let (_d, path) = temp_image(1 << 40);
    let img = Image::open(&path, ImageOptions::default()).unwrap();
    assert_eq!(img.sectors(), (1u64 << 40) / 512);
    let mut buf = [0xffu8; 512];
    img.read_at((1 << 40) - 512, &mut buf).unwrap();
    assert_eq!(buf, [0u8; 512]);
}

proptest::proptest! {
    #[test]
    fn random_io_matches_a_vec_model(ops in proptest::collection::vec(
        (proptest::bool::ANY, 0u64..8192, 1usize..1500, proptest::num::u8::ANY), 1..60)) {
        let img = Image::memory(8192, ImageOptions::default()).unwrap();
        let mut model = vec![0u8; 8192];
        for (write, offset, len, byte) in ops {
            let in_range = offset + len as u64 <= 8192;
            if write {
                let data = vec![byte; len];
                proptest::prop_assert_eq!(img.write_at(offset, &data).is_ok(), in_range);
                if in_range {
                    model[offset as usize..offset as usize + len].copy_from_slice(&data);
                }
            } else {
                let mut buf = vec![0u8; len];
                proptest::prop_assert_eq!(img.read_at(offset, &mut buf).is_ok(), in_range);
                if in_range {
                    proptest::prop_assert_eq!(&buf[..], &model[offset as usize..offset as usize + len]);
                }
            }
        }
    }
}

#[test]
fn image_truncated_underneath_gives_errors_not_sigbus() {
    let (_d, path) = temp_image(1 << 20);
    let img = Image::open(&path, ImageOptions::default()).unwrap();
    img.write_at(0, &[9u8; 512]).unwrap();
    // Another program shrinks the image to one page.
    shrink(&path, 4096);
    let mut buf = [0u8; 512];
    img.read_at(0, &mut buf).unwrap();
    assert_eq!(buf, [9u8; 512]);
    // A read past the new end would raise SIGBUS; it is an error instead, and stays one.
    assert!(matches!(
        img.read_at(512 * 1000, &mut buf),
        Err(StoreError::Shrunk)
    ));
    assert!(matches!(img.read_at(0, &mut buf), Err(StoreError::Shrunk)));
}

#[test]
fn fully_allocated_images_write_through_the_map_and_survive_a_reopen() {
    let (_d, path) = temp_image(0);
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap(); // written out: no holes
    let img = Image::open(&path, ImageOptions::default()).unwrap();
    assert!(
        img.map.writable(),
        "a hole-free image should take writes through the map"
    );
    img.write_at(4096 + 7, b"through the map").unwrap();
    let mut buf = [0u8; 15];
    img.read_at(4096 + 7, &mut buf).unwrap();
    assert_eq!(&buf, b"through the map");
    img.flush().unwrap();
    drop(img);
    assert_eq!(
        &std::fs::read(&path).unwrap()[4096 + 7..4096 + 22],
        b"through the map"
    );
    // A sparse image takes the pwrite path.
    let (_d2, sparse) = temp_image(1 << 20);
    let img = Image::open(&sparse, ImageOptions::default()).unwrap();
    assert!(!img.map.writable());
}

#[test]
fn writes_into_a_shrunk_map_are_refused_not_acknowledged() {
    let (_d, path) = temp_image(0);
    std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    let img = Image::open(&path, ImageOptions::default()).unwrap();
    shrink(&path, 4096);
    assert!(matches!(
        img.write_at(512 * 1000, &[1u8; 512]),
        Err(StoreError::Shrunk)
    ));
    // The file did not grow back: the write went nowhere, and was not acknowledged.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
}
