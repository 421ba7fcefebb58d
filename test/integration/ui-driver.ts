/**
 * Drives real Chromium for the UI tests. playwright-core is used when installed; without it
 * a minimal Chrome DevTools Protocol client over --remote-debugging-pipe (the transport
 * playwright itself uses) does the same few things, so the UI is tested in a real browser
 * either way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type { Readable, Writable } from 'node:stream';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface UiBrowser {
  readonly driver: 'playwright-core' | 'cdp-pipe';
  goto(url: string): Promise<void>;
  /** Evaluate an expression in the page; the value comes back as JSON. */
  eval<T = unknown>(expression: string): Promise<T>;
  fill(selector: string, value: string): Promise<void>;
  select(selector: string, value: string): Promise<void>;
  /** Click something that navigates, and wait for the new page's load event. */
  clickAndWait(selector: string): Promise<void>;
  screenshot(file: string): Promise<void>;
  close(): Promise<void>;
}

/** Poll a page expression until it is truthy. */
export async function waitFor<T>(b: UiBrowser, expression: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await b.eval<T>(expression);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${expression}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function loadPlaywright(): Promise<unknown | undefined> {
  const name = 'playwright-core';
  try {
    return await import(name);
  } catch {
    return undefined;
  }
}

export async function launch(userDataDir: string): Promise<UiBrowser> {
  const pw = (await loadPlaywright()) as { chromium: any } | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any
  if (pw) return launchPlaywright(pw.chromium, userDataDir);
  return CdpPipeBrowser.launch(userDataDir);
}

// ---- playwright-core ----------------------------------------------------------------------

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function launchPlaywright(chromium: any, userDataDir: string): Promise<UiBrowser> {
  // A fresh profile: playwright takes the user data dir as a parameter, not as --user-data-dir.
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  return {
    driver: 'playwright-core',
    goto: async (url) => {
      await page.goto(url, { waitUntil: 'load' });
    },
    eval: (expression) => page.evaluate(expression),
    fill: (sel, v) => page.fill(sel, v),
    select: async (sel, v) => {
      await page.selectOption(sel, v);
    },
    clickAndWait: async (sel) => {
      await Promise.all([page.waitForEvent('load'), page.click(sel)]);
    },
    screenshot: async (file) => {
      await page.screenshot({ path: file, fullPage: true });
    },
    close: () => ctx.close(),
  };
}

// ---- CDP over a pipe ----------------------------------------------------------------------

interface CdpMessage {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

class CdpPipeBrowser implements UiBrowser {
  readonly driver = 'cdp-pipe' as const;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  private readonly waiters = new Set<{ method: string; resolve: () => void }>();
  private sessionId = '';
  private exited = false;

  private constructor(private readonly proc: ChildProcess) {
    const out = proc.stdio[4] as Readable;
    const chunks: Buffer[] = [];
    out.on('data', (d: Buffer) => {
      let start = 0;
      for (let i = d.indexOf(0); i >= 0; i = d.indexOf(0, start)) {
        chunks.push(d.subarray(start, i));
        this.dispatch(JSON.parse(Buffer.concat(chunks).toString('utf8')) as CdpMessage);
        chunks.length = 0;
        start = i + 1;
      }
      if (start < d.length) chunks.push(d.subarray(start));
    });
    proc.on('exit', () => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error('chromium exited'));
      this.pending.clear();
    });
  }

  static async launch(userDataDir: string): Promise<UiBrowser> {
    const proc = spawn(CHROMIUM, [...CHROMIUM_ARGS, `--user-data-dir=${userDataDir}`, '--remote-debugging-pipe', '--window-size=1280,900', 'about:blank'], {
      stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    proc.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    const b = new CdpPipeBrowser(proc);
    try {
      const { targetId } = (await b.send('Target.createTarget', { url: 'about:blank' })) as { targetId: string };
      const { sessionId } = (await b.send('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
      b.sessionId = sessionId;
      await b.send('Page.enable', {}, true);
      await b.send('Runtime.enable', {}, true);
      await b.send('Emulation.setDeviceMetricsOverride', { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false }, true);
    } catch (e) {
      proc.kill('SIGKILL');
      throw new Error(`chromium did not start: ${(e as Error).message}\n${stderr}`);
    }
    return b;
  }

  private dispatch(m: CdpMessage): void {
    if (m.id !== undefined) {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error) p.reject(new Error(m.error.message));
      else p.resolve(m.result ?? {});
      return;
    }
    if (m.method && m.sessionId === this.sessionId) {
      for (const w of [...this.waiters]) {
        if (w.method === m.method) {
          this.waiters.delete(w);
          w.resolve();
        }
      }
    }
  }

  private send(method: string, params: Record<string, unknown> = {}, inPage = false): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error('chromium exited'));
    const id = this.nextId++;
    const msg: CdpMessage = { id, method, params, ...(inPage ? { sessionId: this.sessionId } : {}) };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer from chromium in 15 s`));
      }, 15000);
      this.pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      (this.proc.stdio[3] as Writable).write(JSON.stringify(msg) + '\0');
    });
  }

  private nextEvent(method: string, timeoutMs = 10000): Promise<void> {
    return new Promise((resolve, reject) => {
      const w = {
        method,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`no ${method} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  async goto(url: string): Promise<void> {
    const loaded = this.nextEvent('Page.loadEventFired');
    const r = (await this.send('Page.navigate', { url }, true)) as { errorText?: string };
    if (r.errorText) throw new Error(`navigate ${url}: ${r.errorText}`);
    await loaded;
  }

  async eval<T>(expression: string): Promise<T> {
    const r = (await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, true)) as {
      result: { value?: T };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    };
    if (r.exceptionDetails) throw new Error(`${expression}: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  async fill(selector: string, value: string): Promise<void> {
    await this.eval(`(() => { const el = document.querySelector(${JSON.stringify(selector)}); if (!el) throw new Error('no ${selector}'); el.focus(); el.value = ${JSON.stringify(value)}; el.dispatchEvent(new Event('input', { bubbles: true })); })()`);
  }

  async select(selector: string, value: string): Promise<void> {
    await this.eval(`(() => { const el = document.querySelector(${JSON.stringify(selector)}); if (!el) throw new Error('no ${selector}'); el.value = ${JSON.stringify(value)}; el.dispatchEvent(new Event('change', { bubbles: true })); })()`);
  }

  async clickAndWait(selector: string): Promise<void> {
    const loaded = this.nextEvent('Page.loadEventFired');
    await this.eval(`(() => { const el = document.querySelector(${JSON.stringify(selector)}); if (!el) throw new Error('no ${selector}'); el.click(); })()`);
    await loaded;
  }

  async screenshot(file: string): Promise<void> {
    const r = (await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }, true)) as { data: string };
    fs.writeFileSync(file, Buffer.from(r.data, 'base64'));
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    this.send('Browser.close').catch(() => undefined);
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(t);
  }
}
