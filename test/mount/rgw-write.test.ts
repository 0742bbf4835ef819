/** The mount's write suite once more, against a real object store: Ceph RGW 16.2. */
import { join } from 'node:path';
import { suiteOnRgw } from '../helpers/rgw';

suiteOnRgw(join(__dirname, 'write.test.js'));
