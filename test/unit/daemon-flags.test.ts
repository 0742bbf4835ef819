import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DAEMON_NODE_OPTIONS } from '../../src/daemon/daemon-flags';

t.test('stagefs run as a command gets the Node options its daemon gets when it starts one', async (t) => {
  const main = readFileSync(join(__dirname, '..', '..', 'src', 'cli', 'main.js'), 'utf8');
  t.equal(main.split('\n')[0], `#!/usr/bin/env -S node ${DAEMON_NODE_OPTIONS.join(' ')}`);
});
