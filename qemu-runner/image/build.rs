//! Generates the link script for the RAM base, and passes the board settings on.
//!
//! | variable | meaning | default (QEMU virt) |
//! |---|---|---|
//! | `STAGEHAND_RAM_BASE` | start of RAM, where the image is linked | `0x40000000` |
//! | `STAGEHAND_UART` | PL011 base | `0x09000000` |
//! | `STAGEHAND_GIC` | GICv2 distributor base (CPU interface at +0x10000), or `none` (no watchdog) | `0x08000000` |
//! | `STAGEHAND_BOARD` | `1`: a board image: output on the UART, no semihosting | unset |
//! | `STAGEHAND_EMBED` | a batch blob to embed (board images) | none |

use std::path::PathBuf;

fn hex(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() && v != "none" => {
            let t = v.trim_start_matches("0x").replace('_', "");
            u64::from_str_radix(&t, 16).unwrap_or_else(|_| panic!("{name}={v}: not a hex address"))
        }
        Ok(v) if v == "none" => 0,
        _ => default,
    }
}

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for v in ["STAGEHAND_RAM_BASE", "STAGEHAND_UART", "STAGEHAND_GIC", "STAGEHAND_BOARD", "STAGEHAND_EMBED"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo:rerun-if-changed=link.x.in");
    let ram = hex("STAGEHAND_RAM_BASE", 0x4000_0000);
    assert!(
        ram.is_multiple_of(0x0100_0000) && ram < 1 << 32,
        "STAGEHAND_RAM_BASE must be 16 MiB aligned and below 4 GiB"
    );
    let script = std::fs::read_to_string(dir.join("link.x.in"))
        .expect("link.x.in")
        .replace("@RAM_BASE@", &format!("{ram:#x}"))
        .replace("@HEAP_START@", &format!("{:#x}", ram + 0x0080_0000));
    std::fs::write(out.join("link.x"), script).expect("write link.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-env=STAGEHAND_RAM_BASE_VALUE={ram}");
    println!("cargo:rustc-env=STAGEHAND_UART_VALUE={}", hex("STAGEHAND_UART", 0x0900_0000));
    println!("cargo:rustc-env=STAGEHAND_GIC_VALUE={}", hex("STAGEHAND_GIC", 0x0800_0000));
    let board = std::env::var("STAGEHAND_BOARD").is_ok_and(|v| v == "1");
    println!("cargo:rustc-env=STAGEHAND_BOARD_VALUE={}", u8::from(board));
    let embedded = out.join("embedded.bin");
    match std::env::var("STAGEHAND_EMBED") {
        Ok(p) if !p.is_empty() => {
            println!("cargo:rerun-if-changed={p}");
            std::fs::copy(&p, &embedded).unwrap_or_else(|e| panic!("STAGEHAND_EMBED={p}: {e}"));
        }
        _ => std::fs::write(&embedded, []).expect("write embedded.bin"),
    }
}
