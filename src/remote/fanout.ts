import { StringDecoder } from 'node:string_decoder';

/**
 * Run `fn` over `items` with at most `limit` at once, results in input order. One item's
 * failure never stops the others: `fn` is expected to turn errors into results.
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const width = Math.max(1, Math.min(Math.floor(limit) || 1, items.length));
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return out;
}

/** Splits a byte stream into lines for `n0001: line` prefixes; the tail is flushed at the end. */
export class LineSplitter {
  private rest = '';
  // A UTF-8 character split across two packets must not become two replacement characters.
  private readonly decoder = new StringDecoder('utf8');
  constructor(private readonly onLine: (line: string) => void) {}
  push(chunk: Buffer | string): void {
    const text = this.rest + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    const lines = text.split('\n');
    this.rest = lines.pop()!;
    for (const l of lines) this.onLine(l.replace(/\r$/, ''));
  }
  end(): void {
    this.rest += this.decoder.end();
    if (this.rest) this.onLine(this.rest.replace(/\r$/, ''));
    this.rest = '';
  }
}
