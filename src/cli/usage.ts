/** The usage and help text of every command. */
import { DEFAULTS } from '../config';

export const USAGE: Record<string, string> = {
  mount:
    'usage: stagefs mount s3://BUCKET[/PREFIX] MOUNTPOINT [--endpoint URL] [--region R] [--path-style]\n' +
    '    [--cache-dir DIR] [--cache-size SIZE] [--block-size SIZE] [--metadata-ttl DURATION]\n' +
    '    [--read-only] [--foreground] [--allow-other] [--uid N] [--gid N] [--engine native|fuse-native]\n' +
    '    [--fetcher native|js] [--max-age DURATION] [--sweep-interval DURATION] [--high-watermark N%]\n' +
    '    [--low-watermark N%] [--read-memory SIZE] [--profile NAME] [--ca-bundle FILE] [--log-file FILE] [--metrics HOST:PORT]\n' +
    '    [--state-dir DIR] [-o OPTION,...]\n' +
    '       mount -t fuse.stagefs s3://BUCKET[/PREFIX] MOUNTPOINT [-o OPTION,...]',
  unmount: 'usage: stagefs unmount MOUNTPOINT',
  demo: 'usage: stagefs demo [MOUNTPOINT]',
  status: 'usage: stagefs status [MOUNTPOINT | --cache-dir DIR] [--json]',
  cache: 'usage: stagefs cache prefetch|pin|unpin|evict PATH... | stagefs cache verify [PATH...]',
};

export const HELP: Record<string, string> = {
  mount: `${USAGE.mount}

Mounts a bucket (or a prefix of it) at MOUNTPOINT. Reads fault the bytes they need into a local
staging cache; later reads come from local disk. Files written through the mount are staged
locally and uploaded on close and fsync; a crash before the upload loses nothing (the next
mount uploads them first).

  --endpoint URL          S3 endpoint (default: AWS_ENDPOINT_URL_S3, else AWS)
  --region R              region (default: AWS_REGION, else the profile's, else ${DEFAULTS.region})
  --profile NAME          AWS profile for credentials, region and ca_bundle (default: AWS_PROFILE)
  --ca-bundle FILE        CA certificates (PEM) to trust for an https endpoint (default:
                          AWS_CA_BUNDLE, else the profile's ca_bundle, else the built-in CAs)
  --path-style            path-style addressing (automatic for IP and localhost endpoints)
  --cache-dir DIR         staging cache and its index, private to the daemon's user (default:
                          one per mount under /var/cache/stagefs as root, else ~/.cache/stagefs)
  --cache-size SIZE       bound on staged plus reserved bytes (default ${DEFAULTS.cacheSize}); at least
                          one block, and no more than the cache disk's free space plus what the cache holds
  --block-size SIZE       unit of fetching and staging (default ${DEFAULTS.blockSize})
  --metadata-ttl DURATION how long listings and stats are trusted (default ${DEFAULTS.metadataTtl})
  --max-age DURATION      evict entries idle this long; 0 keeps them (default ${DEFAULTS.maxAge})
  --sweep-interval DURATION  how often idle entries are looked for (default ${DEFAULTS.sweepInterval})
  --high-watermark N%     past this share of --cache-size, evict least recently used entries...
  --low-watermark N%      ...down to this share (defaults ${DEFAULTS.highWatermark}, ${DEFAULTS.lowWatermark})
  --read-memory SIZE      memory for the replies of reads being filled at once (native engine;
                          default ${DEFAULTS.readMemory}, at least 1MiB); a read past it waits for one to finish
  --read-only             refuse every change (EROFS); the mount is writable otherwise
  --foreground            stay attached, logging to stderr; Ctrl-C or SIGTERM unmounts
  --allow-other           let other users reach the mount (permissions are checked)
  --uid N, --gid N        owner shown for every file (default: the mounting user)
  --engine E              native (C engine: staged reads in C, kernel passthrough) or
                          fuse-native (portable); default native where it loads
  --fetcher F             who runs ranged GETs: native (libcurl threads writing straight into the
                          cache) or js; default native where the addon loads
  --log-file FILE         log here instead of stderr; SIGHUP reopens it (default without
                          --foreground: CACHE_DIR/stagefs.log)
  --metrics HOST:PORT     serve Prometheus metrics at http://HOST:PORT/metrics (off by default)
  --state-dir DIR         reserved for written files not uploaded yet (default: one per mount
                          under /var/lib/stagefs as root, else ~/.local/state/stagefs); unused so far
  -o OPTION,...           the flags above as mount options: cache_size=20G,ro,allow_other,...

Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE. Flags win over the
environment. Sizes: 4096, 512MiB, 10GiB. Durations: 500ms, 30s, 10m, 24h.
Without --foreground the command returns once the mount is up (set DEBUG=stagefs:* for detail).

As a mount(8) helper (mount -t fuse.stagefs, fstab type fuse.stagefs) every flag is an option
with '_' for '-' (cache_dir=, cache_size=, read_only or ro, allow_other, uid=, ...); rw, suid,
dev, exec, auto, noauto, nofail, _netdev, atime options and x-systemd.* are accepted and ignored.`,
  unmount: `${USAGE.unmount}

Unmounts a stagefs mount and waits for its daemon to finish. Fails, changing nothing, while
the mount is busy.`,
  demo: `${USAGE.demo}

Starts an embedded S3 server on 127.0.0.1 with sample data shaped like cloud secondary storage
(templates, an ISO, snapshots) and mounts it at MOUNTPOINT (default ./mnt). Ctrl-C unmounts and
removes everything the demo made.`,
  status: `${USAGE.status}

Shows the staging cache: capacity, staged and reserved bytes, entries, hits, misses, bytes
fetched, evictions, bypassed reads, staged blocks that failed their CRC and objects whose
fetched bytes did not match their MD5 ETag (both dropped, to be fetched again), and the largest
entries with their open handles, last access and state. Works while the mount runs. MOUNTPOINT names a running mount; without it or
--cache-dir: the cache of the one running mount. --json prints one object.`,
  cache: `${USAGE.cache}

Acts on files of a running mount; PATH is a file or directory inside the mount.
  prefetch   stage whole files now, with a progress bar
  pin        stage files whole and keep them: no age or capacity eviction (survives remounts)
  unpin      let pinned files be evicted again
  evict      remove files from the cache; refused for a file in use or pinned
  verify     check staged blocks against their checksums (without PATH: every running mount's
             whole cache); bad blocks are dropped, to be fetched again, and the exit status is 1`,
};

export const MAIN_USAGE = `usage: stagefs <command> [options]

commands:
  mount     mount an S3 bucket as a POSIX tree
  unmount   unmount a stagefs mount
  demo      mount sample data from an embedded S3 server
  status    show the staging cache
  cache     prefetch, pin, unpin, evict or verify files of a mount

Run 'stagefs <command> --help' for a command's options; 'stagefs --version' for the version.
As a mount(8) helper: mount -t fuse.stagefs s3://BUCKET[/PREFIX] MOUNTPOINT -o OPTIONS`;
