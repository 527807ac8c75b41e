// What a file is, from its first bytes (not from its name, which clients get wrong).

export type AudioFormat = 'wav' | 'flac' | 'mp3' | 'ogg' | 'opus' | 'm4a' | 'aac' | 'webm';

const ascii = (bytes: Uint8Array, at: number, text: string) => text.split('').every((c, i) => bytes[at + i] === c.charCodeAt(0));

function contains(bytes: Uint8Array, text: string): boolean {
  outer: for (let i = 0; i + text.length <= bytes.length; i++) {
    for (let j = 0; j < text.length; j++) if (bytes[i + j] !== text.charCodeAt(j)) continue outer;
    return true;
  }
  return false;
}

/** Sniffs the container from the first bytes (64 are enough); null when it is none of murmur's formats. */
export function sniffFormat(head: Uint8Array): AudioFormat | null {
  if (ascii(head, 0, 'RIFF') && ascii(head, 8, 'WAVE')) return 'wav';
  if (ascii(head, 0, 'RF64') && ascii(head, 8, 'WAVE')) return 'wav';
  if (ascii(head, 0, 'fLaC')) return 'flac';
  if (ascii(head, 0, 'OggS')) return contains(head, 'OpusHead') ? 'opus' : 'ogg';
  if (ascii(head, 4, 'ftyp')) return 'm4a';
  if (head[0] === 0x1a && head[1] === 0x45 && head[2] === 0xdf && head[3] === 0xa3) return 'webm';
  if (ascii(head, 0, 'ID3')) return 'mp3';
  if (head[0] === 0xff && (head[1] & 0xe0) === 0xe0) {
    const layer = (head[1] >> 1) & 3;
    return layer === 0 ? 'aac' : 'mp3'; // ADTS AAC shares MPEG audio's frame sync, with layer 0
  }
  return null;
}

/** Formats the JavaScript/WebAssembly decoders read, for installations without ffmpeg. */
export const JS_FORMATS: readonly AudioFormat[] = ['wav', 'flac', 'mp3', 'ogg', 'opus'];

/** Whether an OGG stream reaches its end: its last page carries the end-of-stream flag (a cut file's does not). */
export function oggComplete(tail: Uint8Array): boolean {
  for (let i = tail.length - 27; i >= 0; i--) {
    if (tail[i] === 0x4f && tail[i + 1] === 0x67 && tail[i + 2] === 0x67 && tail[i + 3] === 0x53 && tail[i + 4] === 0) {
      const segments = tail[i + 26];
      if (i + 27 + segments > tail.length) return false;
      let body = 0;
      for (let s = 0; s < segments; s++) body += tail[i + 27 + s];
      return (tail[i + 5] & 0x04) !== 0 && i + 27 + segments + body <= tail.length;
    }
  }
  return false;
}

/** FLAC's STREAMINFO: total samples per channel and rate (total is 0 when the encoder did not know). */
export function flacDeclaredSeconds(head: Uint8Array): number | null {
  if (head.length < 42) return null;
  const rate = (head[18] << 12) | (head[19] << 4) | (head[20] >> 4);
  const total = (head[21] & 0x0f) * 2 ** 32 + ((head[22] << 24) >>> 0) + (head[23] << 16) + (head[24] << 8) + head[25];
  return rate > 0 && total > 0 ? total / rate : null;
}

/**
 * An MP3's length as its Xing/Info tag declares it (LAME and most encoders
 * write one), from the first frame; null without a tag. A cut MP3 is
 * otherwise a valid shorter MP3.
 */
export function mp3DeclaredSeconds(head: Uint8Array): number | null {
  let at = 0;
  if (head[0] === 0x49 && head[1] === 0x44 && head[2] === 0x33) {
    // ID3v2: a 10-byte header, a syncsafe size, and a 10-byte footer when flagged.
    at = 10 + ((head[6] & 0x7f) << 21) + ((head[7] & 0x7f) << 14) + ((head[8] & 0x7f) << 7) + (head[9] & 0x7f) + (head[5] & 0x10 ? 10 : 0);
  }
  if (at + 4 > head.length || head[at] !== 0xff || (head[at + 1] & 0xe0) !== 0xe0) return null;
  const version = (head[at + 1] >> 3) & 3; // 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
  const rates = version === 3 ? [44100, 48000, 32000] : version === 2 ? [22050, 24000, 16000] : [11025, 12000, 8000];
  const rate = rates[(head[at + 2] >> 2) & 3];
  const mono = head[at + 3] >> 6 === 3;
  const tag = at + 4 + (version === 3 ? (mono ? 17 : 32) : mono ? 9 : 17);
  if (!rate || tag + 12 > head.length) return null;
  const id = String.fromCharCode(...head.subarray(tag, tag + 4));
  if (id !== 'Xing' && id !== 'Info') return null;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (!(view.getUint32(tag + 4) & 1)) return null;
  return (view.getUint32(tag + 8) * (version === 3 ? 1152 : 576)) / rate;
}
