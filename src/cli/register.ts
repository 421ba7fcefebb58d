// Top-level commands beyond serve/node/group/vnfs, one entry each: the module is imported only
// when the command line names the command (see lazyCommands in main.ts).
import { lazyCommands } from './main.js';

lazyCommands.push(
  { names: ['script'], load: async () => [(await import('./commands/script.js')).scriptCommand] },
  { names: ['stage1'], load: async () => [(await import('./commands/stage1.js')).stage1Command] },
  { names: ['explain'], load: async () => [(await import('./commands/explain.js')).explainCommand] },
  { names: ['power'], load: async () => [(await import('./commands/remote.js')).powerCommand] },
  { names: ['exec'], load: async () => [(await import('./commands/remote.js')).execCommand] },
  { names: ['overlay'], load: async () => [(await import('./commands/overlay.js')).overlayCommand] },
  { names: ['db'], load: async () => [(await import('./commands/db.js')).dbCommand] },
);
