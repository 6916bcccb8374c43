// The result hash, recomputed in the browser (README "Result hash"): for each output file,
// `<lowercase hex sha256>  <path>\n`, lines sorted by the path's UTF-8 bytes; resultHash =
// sha256(manifest). Uses WebCrypto only.
const encoder = new TextEncoder();

export interface OutputFile {
  path: string;
  bytes: Uint8Array;
}

function hex(buffer: ArrayBuffer): string {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return hex(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

/** Orders two strings by their UTF-8 bytes (what `LC_ALL=C sort` does). */
export function compareUtf8(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    if (x[i] !== y[i]) return x[i]! - y[i]!;
  }
  return x.length - y.length;
}

/** The manifest of `files`, one `<sha256>  <path>\n` line each, sorted by path bytes. */
export async function manifestOf(files: OutputFile[]): Promise<string> {
  const sorted = [...files].sort((a, b) => compareUtf8(a.path, b.path));
  const lines = await Promise.all(sorted.map(async (f) => `${await sha256Hex(f.bytes)}  ${f.path}\n`));
  return lines.join("");
}

/** sha256 of the manifest of `files`, as a 0x-prefixed hex string (the on-chain resultHash). */
export async function resultHashOf(files: OutputFile[]): Promise<`0x${string}`> {
  return `0x${await sha256Hex(encoder.encode(await manifestOf(files)))}`;
}
