/** The bucket and key a path-style S3 URL names; undefined for requests on a bucket or the service. */
export function objectOfUrl(url: string): { bucket: string; key: string } | undefined {
  const path = url.split('?')[0];
  const slash = path.indexOf('/', 1);
  if (slash < 0 || slash === path.length - 1) return undefined;
  return { bucket: decodeURIComponent(path.slice(1, slash)), key: decodeURIComponent(path.slice(slash + 1)) };
}
