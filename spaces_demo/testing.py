"""Helpers the demo's tests share: depth files to upload, bad uploads, and serving an app on a free port."""

from __future__ import annotations

import socket
import zlib
from pathlib import Path
from typing import Any

from PIL import Image

from modeling_deepsight.image_processing_deepsight import depth_to_png_mm


def write_synthetic_depth_png(path: str | Path, seed: int = 0) -> tuple[Path, Any]:
    """A synthetic room's depth as a 16-bit millimetre PNG; returns (path, scene)."""
    from dataset_scripts.synthetic import render_scene

    scene = render_scene(seed)
    path = Path(path)
    Image.fromarray(depth_to_png_mm(scene.depth)).save(path)
    return path, scene


def write_huge_png(path: str | Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid 1-bit PNG of `width` x `height` pixels that is only a few tens of kB on disk.

    The rows are streamed through zlib one at a time, so the 50 MB of raw pixels never exist in memory.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed 1-bit pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])  # 1-bit grayscale
    path = Path(path)
    signature = b"\x89PNG\r\n\x1a\n"
    path.write_bytes(signature + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def serve(demo, host: str = "127.0.0.1") -> str:
    """Launch `demo` in this process without blocking; returns its local URL (close with `demo.close()`)."""
    from spaces_demo.app import launch_kwargs

    demo.launch(**launch_kwargs(host=host, port=free_port(host)), prevent_thread_lock=True, quiet=True)
    return demo.local_url
