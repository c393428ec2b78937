//! The image store on a block device: a loop device over a file this test makes and removes.
//! Needs root and loop devices; elsewhere it says why and checks nothing.

use std::process::Command;

use l2san_common::{Image, ImageOptions};

#[test]
fn block_device_images_read_write_and_flush() {
    let dir = std::env::temp_dir().join(format!("l2san-blk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let backing = dir.join("backing.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let out = match Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output()
    {
        Ok(out) if out.status.success() => out,
        other => {
            eprintln!(
                "SKIPPED: cannot attach a loop device (root and /dev/loop* needed): {other:?}"
            );
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    };
    let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
    struct Detach(String, std::path::PathBuf);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).status();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let _detach = Detach(dev.clone(), dir.clone());

    let img = Image::open(dev.as_ref(), ImageOptions::default()).unwrap();
    assert_eq!(img.len_bytes(), 16 << 20);
    assert_eq!(img.sectors(), (16 << 20) / 512);
    img.write_at(512 * 4095, &[0x5au8; 1024]).unwrap();
    let mut buf = [0u8; 1024];
    img.read_at(512 * 4095, &mut buf).unwrap();
    assert_eq!(buf, [0x5au8; 1024]);
    img.flush().unwrap();
    drop(img);
    // What went to the device is in its backing file.
    let _ = Command::new("losetup").args(["-d", &dev]).status();
    let bytes = std::fs::read(&backing).unwrap();
    assert_eq!(&bytes[512 * 4095..512 * 4097], &[0x5au8; 1024]);
}
