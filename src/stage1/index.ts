export { buildStage1, initramfsEntries, DEFAULT_MODULES, STAGE1_CMDLINE, type BuildOptions, type BuildResult } from './build.js';
export { defaultCacheDir, parseKernelDepends, Stage1Error } from './debs.js';
export { writeCpio, readCpio, type CpioEntry, type CpioMember } from './cpio.js';
export { readModinfo, modDepends, moduleName } from './elf.js';
export { moduleLoadOrder } from './modules.js';
