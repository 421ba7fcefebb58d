/**
 * The text framing of a nodescript stream. Pure: what the node's shell receives around and
 * between the scripts' outputs.
 */
export const STREAM_START = '# NODESCRIPT START\n';
export const STREAM_END = '# NODESCRIPT END\n';

/** Single-quote for sh: the only character needing care inside '...' is ' itself. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Text that goes into a comment or an error line: no control characters, bounded. */
export function oneLine(s: string, max = 400): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  return clean.length > max ? clean.slice(0, max) + '...' : clean;
}

/** What ends the stream when a script failed and on_error is abort. */
export function abortLines(label: string, reason: string): string {
  const msg = oneLine(`pxeherd: nodescript ${label} failed: ${reason}`);
  return `echo ${shQuote(msg)} >&2\nexit 1\n`;
}

/** What stands in for a failed script when on_error is continue (Perceus carried on). */
export function continueLine(label: string, reason: string): string {
  return `# ${oneLine(`pxeherd: nodescript ${label} failed: ${reason} (continuing: nodescripts.on_error is continue)`)}\n`;
}

/** A refusal the node's shell shows and fails on (unknown node, bad state word ...). */
export function refusalLines(reason: string): string {
  const msg = oneLine(`pxeherd: ${reason}`);
  return `# ${msg}\necho ${shQuote(msg)} >&2\nexit 1\n`;
}

/**
 * Outputs are concatenated; one that lacks a final newline would glue its last command to
 * the next script's first line, so a newline is added.
 */
export function terminated(out: Buffer): Buffer {
  if (out.length === 0 || out[out.length - 1] === 0x0a) return out;
  return Buffer.concat([out, Buffer.from('\n')]);
}
