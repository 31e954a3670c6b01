"""Draws the kernelspec logos: a descending loss curve on a rounded dark tile.

Writes logo-32x32.png, logo-64x64.png and logo-svg.svg next to this file. Standard library
only (zlib, struct); run once after changing the design: python3 kernel/assets/make_logos.py
"""

import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
BACKGROUND = (0x1E, 0x29, 0x3B)  # slate
AXES = (0x94, 0xA3, 0xB8)
CURVE = (0xF9, 0x73, 0x16)  # orange
# Geometry in a 64-unit box, shared by the PNGs and the SVG.
CORNER = 12
AXIS_X, AXIS_BOTTOM, AXIS_TOP, AXIS_RIGHT = 12, 52, 10, 54
AXIS_WIDTH = 3
CURVE_WIDTH = 5.5


def loss(t):
    """Loss at training progress t in [0, 1] in box coordinates (y grows downwards)."""
    x = 17 + t * 35
    y = 46 - 32 * math.exp(-4.2 * t)
    return x, y


CURVE_POINTS = [loss(i / 48) for i in range(49)]


def inside_tile(x, y):
    cx = min(max(x, CORNER), 64 - CORNER)
    cy = min(max(y, CORNER), 64 - CORNER)
    return (x - cx) ** 2 + (y - cy) ** 2 <= CORNER**2


def distance_to_segment(px, py, a, b):
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def on_curve(x, y):
    return any(distance_to_segment(x, y, a, b) <= CURVE_WIDTH / 2 for a, b in zip(CURVE_POINTS, CURVE_POINTS[1:]))


def on_axes(x, y):
    half = AXIS_WIDTH / 2
    vertical = abs(x - AXIS_X) <= half and AXIS_TOP <= y <= AXIS_BOTTOM + half
    horizontal = abs(y - AXIS_BOTTOM) <= half and AXIS_X - half <= x <= AXIS_RIGHT
    return vertical or horizontal


def color_at(x, y):
    """RGBA of the point (x, y) in box units, or None outside the tile."""
    if not inside_tile(x, y):
        return None
    if on_curve(x, y):
        return CURVE
    if on_axes(x, y):
        return AXES
    return BACKGROUND


def render(size, samples=4):
    scale = 64 / size
    rows = []
    for row in range(size):
        line = bytearray([0])  # filter: none
        for column in range(size):
            total = [0.0, 0.0, 0.0, 0.0]
            for i in range(samples):
                for j in range(samples):
                    x = (column + (i + 0.5) / samples) * scale
                    y = (row + (j + 0.5) / samples) * scale
                    color = color_at(x, y)
                    if color is not None:
                        for k in range(3):
                            total[k] += color[k]
                        total[3] += 1
            coverage = total[3]
            if coverage:
                line += bytes(round(total[k] / coverage) for k in range(3))
            else:
                line += bytes(3)
            line.append(round(255 * coverage / samples**2))
        rows.append(bytes(line))
    return png(size, size, b"".join(rows))


def png(width, height, raw):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def svg():
    hex_color = lambda c: "#%02x%02x%02x" % c
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.2f} {y:.2f}" for i, (x, y) in enumerate(CURVE_POINTS))
    half = AXIS_WIDTH / 2
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">\n'
        f'  <title>tunebook: Rust notebooks for fine-tuning</title>\n'
        f'  <rect width="64" height="64" rx="{CORNER}" fill="{hex_color(BACKGROUND)}"/>\n'
        f'  <path d="M{AXIS_X} {AXIS_TOP} V{AXIS_BOTTOM} H{AXIS_RIGHT}" fill="none" stroke="{hex_color(AXES)}" '
        f'stroke-width="{AXIS_WIDTH}" stroke-linecap="butt" stroke-linejoin="miter"/>\n'
        f'  <path d="{path}" fill="none" stroke="{hex_color(CURVE)}" stroke-width="{CURVE_WIDTH}" '
        'stroke-linecap="round" stroke-linejoin="round"/>\n'
        "</svg>\n"
    )


def main():
    for size in (32, 64):
        with open(os.path.join(HERE, f"logo-{size}x{size}.png"), "wb") as f:
            f.write(render(size))
    with open(os.path.join(HERE, "logo-svg.svg"), "w") as f:
        f.write(svg())


if __name__ == "__main__":
    main()
