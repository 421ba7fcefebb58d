/**
 * TFTP throughput: pxeherd vs dnsmasq vs tftpd-hpa, in one run, same client, same file.
 *
 *   node --import tsx bench/tftp.ts [--size-mib 64] [--runs 3] [--client atftp|curl]
 *        [--blksizes 512,1468,8192] [--windows 1,16] [--concurrency 1,20] [--servers pxeherd,dnsmasq,tftpd-hpa]
 *        [--pxeherd-threads N] [--pxeherd-engine auto|native|js]
 *   --servers may also name pxeherd-js: pxeherd with its JavaScript data path (tftp.engine: js),
 *   to compare with the native one (pxeherd, engine auto) in the same run.
 *
 * dnsmasq only serves TFTP on port 69, so everything runs in a private network namespace
 * (phtftp-bench, loopback only): dnsmasq on 69, pxeherd on 6969,
 * tftpd-hpa on 6970; clients run there too via `ip netns exec`. Needs root.
 * Each cell is the median over runs of MB/s (10^6 bytes/s); with concurrency N it is the
 * aggregate: N x size / wall time of the slowest. Every download's sha256 is checked.
 * tftp-hpa's server ignores windowsize (RFC 7440): its ws=16 rows are lock-step.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
    client: { type: 'string', default: 'atftp' },
    blksizes: { type: 'string', default: '512,1468,8192' },
    windows: { type: 'string', default: '1,16' },
    concurrency: { type: 'string', default: '1,20' },
    servers: { type: 'string', default: 'pxeherd,dnsmasq,tftpd-hpa' },
    'timeout-s': { type: 'string', default: '600' },
    /** pxeherd's transfer threads (TftpServerOptions.threads); default: its own default. */
    'pxeherd-threads': { type: 'string' },
    'pxeherd-engine': { type: 'string', default: 'auto' },
  },
});
const NS = 'phtftp-bench';
const sizeMiB = Number(values['size-mib']);
const runs = Number(values.runs);
const client = values.client!;
const blksizes = values.blksizes!.split(',').map(Number);
const windows = values.windows!.split(',').map(Number);
const concs = values.concurrency!.split(',').map(Number);
const serverNames = values.servers!.split(',');
const timeoutS = Number(values['timeout-s']);
const PORTS: Record<string, number> = { pxeherd: 6969, dnsmasq: 69, 'tftpd-hpa': 6970, 'pxeherd-js': 6971 };

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr?.toString().trim()}`);
}

function waitForLine(p: ChildProcess, re: RegExp, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${re}; got: ${buf}`)), ms);
    const on = (d: Buffer): void => {
      buf += d.toString();
      if (re.test(buf)) {
        clearTimeout(t);
        resolve();
      }
    };
    p.stdout?.on('data', on);
    p.stderr?.on('data', on);
    p.once('exit', (c) => {
      clearTimeout(t);
      reject(new Error(`server exited (${c}) before ready: ${buf}`));
    });
  });
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

function download(port: number, file: string, out: string, blksize: number, windowsize: number): Promise<number> {
  let args: string[];
  if (client === 'curl') {
    // curl knows no windowsize: lock-step only.
    args = ['curl', '-s', '-S', '--tftp-blksize', String(blksize), '-o', out, `tftp://127.0.0.1:${port}/${file}`];
  } else {
    args = ['atftp', '--option', `blksize ${blksize}`, '--option', 'tsize 0'];
    if (windowsize > 1) args.push('--option', `windowsize ${windowsize}`);
    args.push('-g', '-r', file, '-l', out, '127.0.0.1', String(port));
  }
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', NS, 'timeout', String(timeoutS), ...args], { stdio: 'ignore' });
    p.on('exit', (c) => resolve(c ?? 1));
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/tftp.ts needs root (network namespace)');
  const dir = mkdtempSync(path.join(tmpdir(), 'phtftp-bench-'));
  // Downloads go to tmpfs so disk speed is not measured.
  const outDir = mkdtempSync(path.join('/dev/shm', 'phtftp-bench-out-'));
  chmodSync(dir, 0o755);
  const file = 'bench.bin';
  const content = randomBytes(sizeMiB * 1024 * 1024);
  writeFileSync(path.join(dir, file), content, { mode: 0o644 });
  const want = createHash('sha256').update(content).digest('hex');
  const procs: ChildProcess[] = [];
  let pxeherdProc: ChildProcess | undefined;
  spawnSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
  sh('ip', ['netns', 'add', NS]);
  try {
    sh('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    // in.tftpd resolves its -a address with AI_ADDRCONFIG, which fails (exit 66) when the
    // namespace has no non-loopback IPv4 address: give it one on a veth pair kept inside.
    sh('ip', ['-n', NS, 'link', 'add', 'phtftpv0', 'type', 'veth', 'peer', 'name', 'phtftpv1']);
    sh('ip', ['-n', NS, 'addr', 'add', '10.78.0.1/24', 'dev', 'phtftpv0']);
    sh('ip', ['-n', NS, 'link', 'set', 'phtftpv0', 'up']);
    sh('ip', ['-n', NS, 'link', 'set', 'phtftpv1', 'up']);
    const exec = (args: string[]): ChildProcess => {
      const p = spawn('ip', ['netns', 'exec', NS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      procs.push(p);
      return p;
    };
    let pxeStats = '';
    for (const name of ['pxeherd', 'pxeherd-js'] as const) {
      if (!serverNames.includes(name)) continue;
      const engine = name === 'pxeherd-js' ? 'js' : values['pxeherd-engine']!;
      const p = exec(['node', '--import', 'tsx', path.join(import.meta.dirname, 'lib-tftp-server.ts'), '--root', dir, '--port', String(PORTS[name]), '--engine', engine, ...(values['pxeherd-threads'] ? ['--threads', values['pxeherd-threads']] : [])]);
      let startLog = '';
      p.stderr?.on('data', (d: Buffer) => (startLog += d.toString()));
      await waitForLine(p, /READY/, 20_000);
      process.stderr.write(`${name}: ${startLog.trim()}\n`);
      if (name === 'pxeherd') {
        // lib-tftp-server prints its counters (retransmits, duplicate ACKs...) on SIGTERM.
        p.stderr?.on('data', (d: Buffer) => (pxeStats += d.toString()));
        pxeherdProc = p;
      }
    }
    if (serverNames.includes('dnsmasq')) {
      exec(['dnsmasq', '--no-daemon', '--conf-file=/dev/null', '--port=0', '--enable-tftp', `--tftp-root=${dir}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--user=root', '--tftp-max=100', `--pid-file=${dir}/dnsmasq.pid`]);
    }
    if (serverNames.includes('tftpd-hpa')) {
      exec(['in.tftpd', '-L', '-s', dir, '-a', `127.0.0.1:${PORTS['tftpd-hpa']}`]);
    }
    await sleep(1000);
    for (const p of procs) if (p.exitCode !== null) throw new Error(`a server exited early: ${p.spawnargs.join(' ')}`);

    type Row = { bs: number; ws: number; conc: number; mbps: Record<string, number | null> };
    const rows: Row[] = [];
    for (const conc of concs)
      for (const ws of windows)
        for (const bs of blksizes) {
          const row: Row = { bs, ws, conc, mbps: {} };
          const samples: Record<string, number[]> = {};
          const failed = new Set<string>();
          // Servers take turns within each run (rotating who goes first), so a burst of
          // load from elsewhere on this shared machine hits all of them alike.
          for (let r = 0; r < runs; r++) {
            for (let k = 0; k < serverNames.length; k++) {
              const srv = serverNames[(k + r) % serverNames.length]!;
              if (failed.has(srv)) continue;
              const outs = Array.from({ length: conc }, (_, i) => path.join(outDir, `${srv}-${i}`));
              const t0 = process.hrtime.bigint();
              const codes = await Promise.all(outs.map((o) => download(PORTS[srv]!, file, o, bs, ws)));
              const secs = Number(process.hrtime.bigint() - t0) / 1e9;
              for (const [i, o] of outs.entries()) {
                let ok = codes[i] === 0;
                try {
                  ok = ok && createHash('sha256').update(readFileSync(o)).digest('hex') === want;
                } catch {
                  ok = false;
                }
                rmSync(o, { force: true });
                if (!ok) {
                  failed.add(srv);
                  process.stderr.write(`  ${srv} bs=${bs} ws=${ws} conc=${conc} download ${i}: ${codes[i] === 0 ? 'wrong content' : `client exit ${codes[i]}`}\n`);
                }
              }
              if (!failed.has(srv)) (samples[srv] ??= []).push((conc * content.length) / 1e6 / secs);
            }
          }
          for (const srv of serverNames) {
            const v = (samples[srv] ?? []).sort((a, b) => a - b);
            row.mbps[srv] = failed.has(srv) || v.length === 0 ? null : v[Math.floor(v.length / 2)]!;
            process.stderr.write(`bs=${bs} ws=${ws} conc=${conc} ${srv}: ${row.mbps[srv]?.toFixed(1) ?? 'FAILED'} MB/s  [${v.map((x) => x.toFixed(1)).join(' ')}]\n`);
          }
          rows.push(row);
        }

    const fmt = (v: number | null | undefined): string => (v == null ? 'FAIL' : v.toFixed(1));
    const ratio = (a: number | null | undefined, b: number | null | undefined): string => (a == null || b == null ? '-' : (a / b).toFixed(2));
    console.log(`\nTFTP ${sizeMiB} MiB over loopback in netns ${NS}, client ${client}, median of ${runs} run(s), MB/s (aggregate for concurrency > 1)`);
    console.log('| blksize | window | conc | ' + serverNames.join(' | ') + ' | pxeherd/dnsmasq | pxeherd/tftpd-hpa |');
    console.log('|---|---|---|' + serverNames.map(() => '---|').join('') + '---|---|');
    for (const r of rows) {
      console.log(
        `| ${r.bs} | ${r.ws} | ${r.conc} | ` +
          serverNames.map((s) => fmt(r.mbps[s])).join(' | ') +
          ` | ${ratio(r.mbps.pxeherd, r.mbps.dnsmasq)} | ${ratio(r.mbps.pxeherd, r.mbps['tftpd-hpa'])} |`,
      );
    }
    if (pxeherdProc) {
      pxeherdProc.kill('SIGTERM');
      await new Promise((r) => pxeherdProc!.once('exit', r));
      console.log(`pxeherd server counters: ${pxeStats.trim()}`);
    }
  } finally {
    for (const p of procs) if (p.pid && p.exitCode === null) p.kill('SIGTERM');
    await sleep(300);
    for (const p of procs) if (p.pid && p.exitCode === null) p.kill('SIGKILL');
    spawnSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
    rmSync(outDir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(`bench/tftp.ts: ${(e as Error).message}`);
  process.exit(1);
});
