// Registers COUNT new MACs (prefix given) the way a booting node is auto-registered.
import { Store } from '../../src/store/store.js';

const [statedir, prefix, count] = process.argv.slice(2) as [string, string, string];
const store = Store.open(statedir);
const policy = { pattern: 'n####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' };
let created = 0;
for (let i = 0; i < Number(count); i++) {
  const mac = `${prefix}:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
  if (store.nodes.register(mac, policy).created) created++;
}
store.close();
process.stdout.write(JSON.stringify({ created }) + '\n');
