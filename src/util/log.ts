import { pino, type Logger, type DestinationStream } from 'pino';
import { Writable } from 'node:stream';

export type { Logger };

/**
 * Structured JSON lines (one per boot event) for log shippers; a short human form when
 * stdout is a terminal. Both carry the same fields.
 */
export function createLogger(level: string, opts: { pretty?: boolean; stream?: DestinationStream } = {}): Logger {
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  const dest = opts.stream ?? (pretty ? prettyStream() : pino.destination({ dest: 1, sync: false }));
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

function prettyStream(): DestinationStream {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        try {
          const { level, time, msg, ...rest } = JSON.parse(line) as Record<string, unknown>;
          const extra = Object.entries(rest)
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ');
          process.stdout.write(`${String(time).slice(11, 23)} ${(LEVELS[level as number] ?? String(level)).padEnd(5)} ${msg ?? ''}${extra ? '  ' + extra : ''}\n`);
        } catch {
          process.stdout.write(line + '\n');
        }
      }
      cb();
    },
  }) as unknown as DestinationStream;
}

/** A logger that drops everything: tests and CLI commands that must print nothing extra. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
