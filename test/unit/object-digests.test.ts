import t from 'tap';
import { md5OfEtag } from '../../src/cache/object-digests';

t.test('the MD5 an ETag stands for', async (t) => {
  t.equal(md5OfEtag('"d41d8cd98f00b204e9800998ecf8427e"'), 'd41d8cd98f00b204e9800998ecf8427e', 'a quoted single-part ETag');
  t.equal(md5OfEtag('D41D8CD98F00B204E9800998ECF8427E'), 'd41d8cd98f00b204e9800998ecf8427e', 'unquoted, in capitals');
  t.equal(md5OfEtag('"d41d8cd98f00b204e9800998ecf8427e-3"'), undefined, 'a multipart ETag is no MD5 of the bytes');
  t.equal(md5OfEtag('"abc"'), undefined, 'nor is any other form');
  t.equal(md5OfEtag('W/"d41d8cd98f00b204e9800998ecf8427e"'), undefined, 'nor a weak ETag');
});
