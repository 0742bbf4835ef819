import t from 'tap';
import { exerciseMount } from '../helpers/mount-exerciser';

void t.test('20,000 random operations on the native engine match the model', (t) => exerciseMount(t, 'native'));
