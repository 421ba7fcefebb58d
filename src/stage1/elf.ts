/**
 * Reading a kernel module's .modinfo section (name=, depends=, vermagic= ...) straight
 * from the ELF file, so the image builder needs neither kmod's modinfo nor modules.dep
 * (Debian's kernel package ships no modules.dep). Pure and total: a value or a reason.
 */
export type ModinfoResult = { ok: true; info: Map<string, string[]> } | { ok: false; error: string };

export function readModinfo(buf: Buffer): ModinfoResult {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) return { ok: false, error: 'not an ELF file' };
  const cls = buf[4];
  const data = buf[5];
  if (cls !== 2) return { ok: false, error: 'not a 64-bit ELF file' };
  if (data !== 1) return { ok: false, error: 'not a little-endian ELF file' };
  try {
    const shoff = Number(buf.readBigUInt64LE(0x28));
    const shentsize = buf.readUInt16LE(0x3a);
    const shnum = buf.readUInt16LE(0x3c);
    const shstrndx = buf.readUInt16LE(0x3e);
    if (shentsize < 64 || shoff + shnum * shentsize > buf.length || shstrndx >= shnum) return { ok: false, error: 'bad section header table' };
    const sec = (i: number) => {
      const o = shoff + i * shentsize;
      return { name: buf.readUInt32LE(o), offset: Number(buf.readBigUInt64LE(o + 0x18)), size: Number(buf.readBigUInt64LE(o + 0x20)) };
    };
    const strtab = sec(shstrndx);
    if (strtab.offset + strtab.size > buf.length) return { ok: false, error: 'bad section name table' };
    for (let i = 0; i < shnum; i++) {
      const s = sec(i);
      const nameEnd = buf.indexOf(0, strtab.offset + s.name);
      if (nameEnd < 0) continue;
      if (buf.toString('latin1', strtab.offset + s.name, nameEnd) !== '.modinfo') continue;
      if (s.offset + s.size > buf.length) return { ok: false, error: '.modinfo runs past the end of the file' };
      const info = new Map<string, string[]>();
      for (const entry of buf.toString('utf8', s.offset, s.offset + s.size).split('\0')) {
        const eq = entry.indexOf('=');
        if (eq <= 0) continue;
        const k = entry.slice(0, eq);
        const list = info.get(k) ?? [];
        list.push(entry.slice(eq + 1));
        info.set(k, list);
      }
      return { ok: true, info };
    }
    return { ok: false, error: 'no .modinfo section (not a kernel module?)' };
  } catch (e) {
    return { ok: false, error: `truncated ELF file (${(e as Error).message})` };
  }
}

/** Module names as the kernel writes them: '-' and '_' are the same. */
export function moduleName(s: string): string {
  return s.replace(/-/g, '_');
}

/** The depends= list of a module (empty when it has none). */
export function modDepends(info: Map<string, string[]>): string[] {
  return (info.get('depends') ?? []).flatMap((d) => d.split(',')).map((d) => moduleName(d.trim())).filter(Boolean);
}
