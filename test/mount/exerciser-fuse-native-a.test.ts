import t from 'tap';
import { exerciseMount } from '../helpers/mount-exerciser';

// Half of the 20,000 operations on this engine; the other half runs beside it in its own file.
void t.test('10,000 random operations on the fuse-native engine match the model', (t) => exerciseMount(t, 'fuse-native', [11, 12]));
