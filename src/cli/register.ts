// Commands beyond node/group/vnfs/serve are added to the CLI here, one line each.
import { extraCommands } from './main.js';
void extraCommands;
