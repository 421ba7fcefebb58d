// Commands beyond node/group/vnfs/serve are added to the CLI here, one line each.
import { extraCommands } from './main.js';
import { stage1Command } from './commands/stage1.js';
import { explainCommand } from './commands/explain.js';
import { scriptCommand } from './commands/script.js';
import { powerCommand, execCommand } from './commands/remote.js';

extraCommands.push(scriptCommand, stage1Command, explainCommand, powerCommand, execCommand);
import { overlayCommand } from './commands/overlay.js';
extraCommands.push(overlayCommand);
import { dbCommand } from './commands/db.js';
extraCommands.push(dbCommand);
