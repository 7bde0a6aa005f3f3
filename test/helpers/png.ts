// A PNG decoder for screenshots (node:zlib only): 8-bit greyscale, RGB or
// RGBA, not interlaced, which is what Chromium writes. Enough to read the
// colours a test expects in a picture of the page.
import zlib from 'node:zlib';

export interface Picture {
  width: number;
  height: number;
  /** RGBA, 4 bytes a pixel, row after row. */
  rgba: Uint8Array;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Bytes per pixel by colour type: greyscale, RGB, greyscale and alpha, RGBA. */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };

export function decodePng(png: Buffer): Picture {
  if (!png.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG');
  let width = 0;
  let height = 0;
  let channels = 0;
  const data: Buffer[] = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const body = png.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      const [depth, colourType, , , interlace] = [body[8]!, body[9]!, body[10]!, body[11]!, body[12]!];
      channels = CHANNELS[colourType] ?? 0;
      if (depth !== 8 || channels === 0 || interlace !== 0) throw new Error(`PNG not supported here: depth ${depth}, colour type ${colourType}, interlace ${interlace}`);
    } else if (type === 'IDAT') {
      data.push(body);
    } else if (type === 'IEND') {
      break;
    }
    at += 12 + length;
  }
  const raw = zlib.inflateSync(Buffer.concat(data));
  const stride = width * channels;
  if (raw.length !== height * (stride + 1)) throw new Error(`PNG data is ${raw.length} bytes, ${height * (stride + 1)} expected`);
  const pixels = new Uint8Array(height * stride);
  for (let row = 0; row < height; row++) {
    const filter = raw[row * (stride + 1)]!;
    const line = raw.subarray(row * (stride + 1) + 1, (row + 1) * (stride + 1));
    const out = row * stride;
    for (let i = 0; i < stride; i++) {
      const left = i >= channels ? pixels[out + i - channels]! : 0;
      const up = row > 0 ? pixels[out - stride + i]! : 0;
      const upLeft = row > 0 && i >= channels ? pixels[out - stride + i - channels]! : 0;
      let predicted: number;
      switch (filter) {
        case 0: predicted = 0; break;
        case 1: predicted = left; break;
        case 2: predicted = up; break;
        case 3: predicted = (left + up) >> 1; break;
        case 4: {
          const p = left + up - upLeft;
          const [pa, pb, pc] = [Math.abs(p - left), Math.abs(p - up), Math.abs(p - upLeft)];
          predicted = pa <= pb && pa <= pc ? left : pb <= pc ? up : upLeft;
          break;
        }
        default: throw new Error(`PNG filter ${filter} unknown`);
      }
      pixels[out + i] = (line[i]! + predicted) & 0xff;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    const source = pixels.subarray(p * channels, (p + 1) * channels);
    const [r, g, b, a] = channels === 1 ? [source[0]!, source[0]!, source[0]!, 255] : channels === 2 ? [source[0]!, source[0]!, source[0]!, source[1]!] : channels === 3 ? [source[0]!, source[1]!, source[2]!, 255] : [source[0]!, source[1]!, source[2]!, source[3]!];
    rgba.set([r, g, b, a], p * 4);
  }
  return { width, height, rgba };
}

/** "#4e79a7" → [0x4e, 0x79, 0xa7]. */
export function hexColour(hex: string): [number, number, number] {
  const match = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!match) throw new Error(`not a #rrggbb colour: ${hex}`);
  return [parseInt(match[1]!, 16), parseInt(match[2]!, 16), parseInt(match[3]!, 16)];
}

/** The pixels of `colour` (each channel within `tolerance`), opaque: how many, and where they are. */
export function pixelsOf(picture: Picture, colour: [number, number, number], tolerance = 2): { count: number; points: Array<[number, number]> } {
  const points: Array<[number, number]> = [];
  for (let p = 0; p < picture.width * picture.height; p++) {
    const at = p * 4;
    if (picture.rgba[at + 3]! < 250) continue;
    if (colour.every((value, c) => Math.abs(picture.rgba[at + c]! - value) <= tolerance)) points.push([p % picture.width, Math.floor(p / picture.width)]);
  }
  return { count: points.length, points };
}
