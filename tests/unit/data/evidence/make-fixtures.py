#!/usr/bin/env python3
"""Writes the fake proc roots test_evidence.c reads. Run from this directory;
the output is committed, this script only documents and regenerates it.

before/ is taken at 10 s, after/ at 12 s (tests say so): a 2 s window, 200
ticks at 100 Hz. Per pid, what after/ holds against before/:
  1     systemd        +1 tick                  0.5 %
  42    kworker/0:1    +4, empty cmdline        2 %    "[kworker/0:1]"
  100   php-fpm7.4     +200                     100 %
  200   (sd-pam)       +10                      5 %
  250   "my worker"    +50                      25 %   (ties with 300, lower pid first)
  300   "a) b (c"      +50, cmdline with a control char, invalid UTF-8, a C1 control
  400   stress         exits (before only)
  500   reused pid: new starttime, 30 ticks      15 %, new
  600   malformed stat in both (cut in before, non-numeric field in after)
  700   yes            new, 500 ticks clamped to the 200 of the window: 100 %, new
  800   sleep          +0, left out
  900   python3        +20, cmdline cut on a UTF-8 boundary   10 %
  1000  postgres       +6, NULs inside and trailing           3 %
  1100  bigstat        +2, stat line over 1 KiB in after/     1 %
                       cmdline: NULs past the 1 KiB read, then more: "bigstat…"
  1200  a stat that names pid 1201 (after/): counted as malformed
  12345 a pid dir without stat (vanished): skipped, not counted
  999   a regular file: skipped
  0100  not a name the kernel prints (leading zero), holding pid 100's stat: skipped
  self  a non-numeric dir holding a valid stat: skipped
after/uptime is 999.99 s: 99999 ticks at 100 Hz.
noup/ has one process and no uptime file.
"""
import os

def stat(pid, comm, state, utime, stime, start, rss, prio=20, nice=0, extra=0):
    f = [pid, '(%s)' % comm, state, 1, pid, pid, 0, -1, 4194560, 1234, 0, 7, 0,
         utime, stime, 0, 0, prio, nice, 1, 0, start, 17000000 if rss else 0, rss,
         18446744073709551615, 1, 1, 0, 0, 0, 0, 0, 4096, 17663, 0, 0, 0, 17, 0, 0,
         0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert len(f) == 52
    f += [123456789012345] * extra
    return ' '.join(str(x) for x in f) + '\n'

def write(root, name, data):
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())

LONG = b'python3\0-c\0' + b'x' * 148 + '\u00e9t\u00e9'.encode() + b'\0'

procs = {
    # pid: (comm, state, before(utime, stime, start), after(...), rss, cmdline)
    1: ('systemd', 'S', (100, 50, 10), (101, 50, 10), 3000, b'/sbin/init\0splash\0'),
    42: ('kworker/0:1', 'I', (0, 96, 20), (0, 100, 20), 0, b''),
    100: ('php-fpm7.4', 'R', (1000, 200, 5000), (1150, 250, 5000), 25000, b'php-fpm: pool www' + b'\0' * 12),
    200: ('(sd-pam)', 'S', (5, 5, 3000), (10, 10, 3000), 400, b'(sd-pam)\0'),
    250: ('my worker', 'R', (300, 0, 7000), (350, 0, 7000), 1000, b'/usr/bin/worker\0--name\0my worker\0'),
    300: ('a) b (c', 'R', (100, 0, 8000), (150, 0, 8000), 512,
          b'./evil\0a\x01b\0\xff\xfe\0caf\xc3\xa9\0\xc2\x85\0'),
    400: ('stress', 'R', (5000, 0, 9000), None, 100, b'stress\0'),
    500: ('cron', 'S', (9000, 0, 6000), None, 300, b'/usr/sbin/cron\0'),
    700: ('yes', 'R', None, (500, 0, 99800), 100, b'yes\0'),
    800: ('sleep', 'S', (3, 0, 9500), (3, 0, 9500), 100, b'sleep\0infinity\0'),
    900: ('python3', 'R', (1000, 0, 9600), (1020, 0, 9600), 2000, LONG),
    1000: ('postgres', 'S', (40, 0, 9700), (46, 0, 9700), 6000, b'postgres:\0\0writer\0\0\0'),
    1100: ('bigstat', 'S', (10, 0, 9800), (12, 0, 9800), 100, b'bigstat' + b'\0' * 1100 + b'hidden\0'),
}

for root, idx in (('before', 2), ('after', 3)):
    for pid, p in procs.items():
        t = p[idx]
        if t is None:
            continue
        extra = 60 if (root == 'after' and pid == 1100) else 0
        prio, nice = (0, -20) if pid == 42 else (20, 0)
        write(root, '%d/stat' % pid, stat(pid, p[0], p[1], t[0], t[1], t[2], p[4], prio, nice, extra))
        write(root, '%d/cmdline' % pid, p[5])
    os.makedirs(os.path.join(root, '12345'), exist_ok=True)
    write(root, '12345/cmdline', b'')  # git keeps no empty dirs
    write(root, '999', b'not a directory\n')
    write(root, '0100/stat', stat(100, 'php-fpm7.4', 'R', 99999, 0, 5000, 1))
    write(root, 'self/stat', stat(100, 'php-fpm7.4', 'R', 99999, 0, 5000, 1))

# pid 500 reused in the window by a busy shell.
write('after', '500/stat', stat(500, 'bash', 'R', 20, 10, 99950, 700))
write('after', '500/cmdline', b'bash\0-c\0while :; do :; done\0')
# malformed stats: cut (no newline) before, a non-numeric field after.
write('before', '600/stat', stat(600, 'broken', 'R', 1, 1, 100, 1)[:60])
write('after', '600/stat', stat(600, 'broken', 'R', 1, 1, 100, 1).replace(' 1234 ', ' 12x4 '))
write('after', '1200/stat', stat(1201, 'liar', 'R', 1, 1, 100, 1))
write('before', 'uptime', '998.00 1.00\n')
write('after', 'uptime', '999.99 2.00\n')
write('noup', '7/stat', stat(7, 'noup', 'R', 5, 5, 100, 1))
write('noup', '7/cmdline', b'noup\0')
