import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lazyCommands, loadCommands, main, type Run } from '../../src/cli/main.js';
import '../../src/cli/register.js';

const run: Run = () => async () => {};

test('every lazily loaded top-level command declares exactly the names and aliases its Command has', async () => {
  const seen = new Set<string>();
  for (const entry of lazyCommands) {
    const cmds = (await entry.load()).map((f) => f(run));
    assert.equal(cmds.length, 1, `${entry.names[0]} loads one command`);
    const c = cmds[0]!;
    assert.deepEqual([c.name(), ...c.aliases()].sort(), [...entry.names].sort(), `names of ${c.name()}`);
    for (const n of entry.names) {
      assert.ok(!seen.has(n), `${n} is declared twice`);
      seen.add(n);
    }
  }
  for (const n of ['serve', 'node', 'group', 'vnfs', 'image', 'script', 'stage1', 'explain', 'power', 'exec', 'overlay', 'db']) assert.ok(seen.has(n), n);
});

test('a named command loads only its own module; help and unknown words load the whole tree', async () => {
  assert.deepEqual((await loadCommands(['node', 'list', '--json'])).map((f) => f(run).name()), ['node']);
  assert.deepEqual((await loadCommands(['image', 'list', '--config', 'x'])).map((f) => f(run).name()), ['vnfs']);
  assert.equal((await loadCommands(['--help'])).length, lazyCommands.length);
  assert.equal((await loadCommands(['nope'])).length, lazyCommands.length);
});

test('an unknown command still gets commander\'s suggestion and exit code 2', async () => {
  let err = '';
  const code = await main(['nod', 'list'], { out: () => {}, err: (s) => void (err += s) });
  assert.equal(code, 2);
  assert.match(err, /unknown command 'nod'/);
  assert.match(err, /Did you mean node\?/);
});

test('an option value a parser refuses is a usage error (exit 2) with the parser\'s own message', async () => {
  let err = '';
  const code = await main(['power', 'status', 'x', '--timeout', '0'], { out: () => {}, err: (s) => void (err += s) });
  assert.equal(code, 2);
  assert.equal(err, 'pxeherd: --timeout must be a number of seconds > 0, not "0"\n');
});

test('node list loads the node subcommands defined with it only; help, the others and unknown words load them all', async () => {
  const subcommands = async (argv: string[]) => (await loadCommands(argv)).map((f) => f(run)).find((c) => c.name() === 'node')!.commands.map((c) => c.name());
  const own = await subcommands(['node', 'list', 'group:compute', '--json']);
  assert.ok(own.includes('list') && own.includes('show') && own.includes('set'), own.join(' '));
  assert.ok(!own.includes('reinstall') && !own.includes('timeline'), own.join(' '));
  const every = [...own, 'reinstall', 'locate', 'plan', 'release', 'timeline', 'rollback'];
  for (const argv of [['node'], ['node', '--help'], ['node', 'help'], ['node', 'reinstall', 'n1'], ['node', 'timeline', '--help'], ['node', 'lst'], []]) {
    assert.deepEqual((await subcommands(argv)).sort(), [...every].sort(), argv.join(' '));
  }
});
