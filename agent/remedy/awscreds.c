/* The credentials chain's local sources and the parsers behind all four. */
#include "awscreds.h"

#include <ctype.h>
#include <time.h>

#include <json-c/json.h>

#include "config.h"
#include "fileio.h"
#include "jsonutil.h"
#include "secret.h"

#define AWS_CREDENTIALS_FILE_MAX (64 * 1024)
#define SYSTEMD_CREDENTIAL_NAME "aws-credentials"

static const char *const source_table[_AWS_CRED_SOURCE_MAX] = {
        [AWS_CRED_NONE] = "none",
        [AWS_CRED_ENVIRONMENT] = "environment",
        [AWS_CRED_SYSTEMD] = "systemd-credentials",
        [AWS_CRED_FILE] = "shared-credentials-file",
        [AWS_CRED_INSTANCE_ROLE] = "instance-role",
};

const char *aws_cred_source_to_string(AwsCredSource s) {
        return s >= 0 && s < _AWS_CRED_SOURCE_MAX ? source_table[s] : NULL;
}

static void wipe(char **s) {
        if (*s)
                free_wiped(*s, strlen(*s));
        *s = NULL;
}

void aws_credentials_done(AwsCredentials *c) {
        if (!c)
                return;
        wipe(&c->access_key);
        wipe(&c->secret_key);
        wipe(&c->session_token);
        free(c->origin);
        *c = (AwsCredentials) {};
}

int aws_credentials_copy(const AwsCredentials *from, AwsCredentials *to) {
        AwsCredentials c = {
                .access_key = from->access_key ? strdup(from->access_key) : NULL,
                .secret_key = from->secret_key ? strdup(from->secret_key) : NULL,
                .session_token = from->session_token ? strdup(from->session_token) : NULL,
                .expiration = from->expiration,
                .source = from->source,
                .origin = from->origin ? strdup(from->origin) : NULL,
        };

        if ((from->access_key && !c.access_key) || (from->secret_key && !c.secret_key) ||
            (from->session_token && !c.session_token) || (from->origin && !c.origin)) {
                aws_credentials_done(&c);
                return -ENOMEM;
        }
        *to = c;
        return 0;
}

/* Key ids are [A-Z0-9]; secrets are base64-ish. Either way: one token
 * without blanks or control characters, or curl would sign garbage. */
static bool key_valid(const char *s, size_t max) {
        size_t n = 0;

        if (isempty(s))
                return false;
        for (; s[n]; n++)
                if (!isgraph((unsigned char) s[n]) || n >= max)
                        return false;
        return true;
}

static int credentials_build(const char *ak, const char *sk, const char *token, AwsCredSource source,
                             const char *origin, AwsCredentials *ret, char **ret_error) {
        AwsCredentials c = {};

        if (!key_valid(ak, 128))
                return error_set(ret_error, -EBADMSG, "%s: the access key id is empty or malformed", origin);
        if (!key_valid(sk, 256))
                return error_set(ret_error, -EBADMSG, "%s: the secret access key is empty or malformed", origin);
        if (token && !key_valid(token, 8192))
                return error_set(ret_error, -EBADMSG, "%s: the session token is malformed", origin);
        c.access_key = strdup(ak);
        c.secret_key = strdup(sk);
        c.session_token = token ? strdup(token) : NULL;
        c.origin = strdup(origin);
        c.source = source;
        if (!c.access_key || !c.secret_key || (token && !c.session_token) || !c.origin) {
                aws_credentials_done(&c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

int aws_credentials_from_vars(const char *access_key, const char *secret_key, const char *session_token,
                              AwsCredentials *ret, char **ret_error) {
        if (isempty(access_key) && isempty(secret_key))
                return -ENOENT;
        if (isempty(access_key) || isempty(secret_key))
                return error_set(ret_error, -EINVAL, "environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must "
                                                     "be set together (only %s is)",
                                 isempty(access_key) ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        return credentials_build(access_key, secret_key, isempty(session_token) ? NULL : session_token,
                                 AWS_CRED_ENVIRONMENT, "environment", ret, ret_error);
}

typedef struct FileParse {
        const char *profile;
        bool found;
        unsigned duplicates;
        char *ak, *sk, *token;
} FileParse;

static int file_handler(void *user, const char *section, const char *name, const char *value) {
        FileParse *p = user;
        char **dest = NULL;

        /* The credentials file names profiles bare ([prod]); the config
         * file's "profile prod" form is accepted too. */
        if (!streq(section, p->profile) &&
            !(strncmp(section, "profile ", 8) == 0 && streq(section + 8, p->profile)))
                return 1;
        p->found = true;
        if (strcasecmp(name, "aws_access_key_id") == 0)
                dest = &p->ak;
        else if (strcasecmp(name, "aws_secret_access_key") == 0)
                dest = &p->sk;
        else if (strcasecmp(name, "aws_session_token") == 0)
                dest = &p->token;
        else
                return 1; /* region, output, ...: not ours */
        if (*dest)
                p->duplicates++;
        wipe(dest);
        *dest = strdup(value);
        return *dest ? 1 : 0;
}

/* The INI subset of the shared credentials file, by hand: Debian's inih
 * is built with 200-byte lines and splits longer ones, and a session token
 * alone is often 1000 bytes. Same rules as inih otherwise: ; and # start
 * comment lines, " ;" an inline comment, "=" or ":" separates. Lines may
 * hold secrets: every copy is wiped. -EBADMSG with *ret_line. */
static int file_parse(const char *text, FileParse *p, unsigned *ret_line) {
        _cleanup_(freep) char *section = NULL;
        unsigned line = 0;
        const char *s = text;

        if (strncmp(s, "\xEF\xBB\xBF", 3) == 0)
                s += 3;
        while (*s) {
                const char *eol = strchrnul(s, '\n'), *b = s, *e = eol;
                char *buf, *sep, *name, *value, *c;
                int k;

                line++;
                s = *eol ? eol + 1 : eol;
                while (b < e && isspace((unsigned char) *b))
                        b++;
                while (e > b && isspace((unsigned char) e[-1]))
                        e--;
                if (b == e || *b == '#' || *b == ';')
                        continue;
                if (*b == '[') {
                        const char *close = memchr(b, ']', (size_t) (e - b));

                        if (!close) {
                                *ret_line = line;
                                return -EBADMSG;
                        }
                        free(section);
                        section = strndup(b + 1, (size_t) (close - b - 1));
                        if (!section)
                                return -ENOMEM;
                        continue;
                }
                buf = strndup(b, (size_t) (e - b));
                if (!buf)
                        return -ENOMEM;
                sep = strpbrk(buf, "=:");
                if (!sep) {
                        free_wiped(buf, strlen(buf));
                        *ret_line = line;
                        return -EBADMSG;
                }
                *sep = '\0';
                name = buf;
                for (c = sep; c > name && isspace((unsigned char) c[-1]); c--)
                        c[-1] = '\0';
                value = sep + 1;
                while (isspace((unsigned char) *value))
                        value++;
                for (c = value; *c; c++)
                        if (*c == ';' && c > value && isspace((unsigned char) c[-1])) {
                                *c = '\0';
                                break;
                        }
                for (c = value + strlen(value); c > value && isspace((unsigned char) c[-1]); c--)
                        c[-1] = '\0';
                k = file_handler(p, section ? section : "", name, value);
                free_wiped(buf, (size_t) (e - b));
                if (k == 0)
                        return -ENOMEM;
        }
        return 0;
}

int aws_credentials_parse_file(const char *text, const char *profile, const char *origin, AwsCredentials *ret,
                               char **ret_error) {
        FileParse p = { .profile = isempty(profile) ? "default" : profile };
        _cleanup_(freep) char *where = NULL;
        unsigned line = 0;
        int r;

        r = file_parse(text, &p, &line);
        if (r == -EBADMSG)
                r = error_set(ret_error, -EBADMSG, "%s:%u: not a valid credentials file line", origin, line);
        if (r < 0)
                goto done;
        if (!p.found) {
                r = error_set(ret_error, -ENOENT, "%s: no profile [%s]", origin, p.profile);
                goto done;
        }
        if (p.duplicates > 0) {
                r = error_set(ret_error, -EBADMSG, "%s: profile [%s] sets a key twice", origin, p.profile);
                goto done;
        }
        if (!p.ak || !p.sk) {
                r = error_set(ret_error, -EBADMSG, "%s: profile [%s] lacks %s", origin, p.profile,
                              !p.ak ? "aws_access_key_id" : "aws_secret_access_key");
                goto done;
        }
        if (asprintf(&where, "profile %s in %s", p.profile, origin) < 0) {
                r = -ENOMEM;
                goto done;
        }
        r = credentials_build(p.ak, p.sk, isempty(p.token) ? NULL : p.token, AWS_CRED_FILE, where, ret, ret_error);
done:
        wipe(&p.ak);
        wipe(&p.sk);
        wipe(&p.token);
        return r;
}

int aws_parse_iso8601(const char *s, usec_t *ret) {
        struct tm tm = {}, want;
        const char *p;
        time_t t;

        if (isempty(s))
                return -EINVAL;
        p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return -EINVAL;
        if (*p == '.') /* fractional seconds: dropped */
                for (p++; isdigit((unsigned char) *p); p++)
                        ;
        if (!streq(p, "Z") && !streq(p, "+00:00"))
                return -EINVAL;
        want = tm;
        t = timegm(&tm);
        if (t < 0)
                return -EINVAL;
        /* strptime takes Feb 31 and timegm makes it Mar 3: a day that does
         * not exist is a malformed date, not another day */
        if (tm.tm_year != want.tm_year || tm.tm_mon != want.tm_mon || tm.tm_mday != want.tm_mday)
                return -EINVAL;
        *ret = (usec_t) t * USEC_PER_SEC;
        return 0;
}

static const char *json_string(json_object *o, const char *key) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

int aws_credentials_parse_role(const char *json, size_t len, const char *role, AwsCredentials *ret,
                               char **ret_error) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        _cleanup_(freep) char *origin = NULL;
        const char *code, *exp;
        usec_t expiration;
        int r;

        if (asprintf(&origin, "role %s", strna(role)) < 0)
                return -ENOMEM;
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, json, (int) MIN(len, (size_t) INT32_MAX));
        if (!o || !json_object_is_type(o, json_type_object))
                return error_set(ret_error, -EBADMSG, "IMDS %s: credentials are not a JSON object", origin);
        code = json_string(o, "Code");
        if (code && !streq(code, "Success")) {
                /* quoted into status and logs: ASCII only, whatever IMDS sent */
                char word[41];
                size_t i;
                for (i = 0; code[i] && i + 1 < sizeof word; i++)
                        word[i] = isalnum((unsigned char) code[i]) || strchr("_.-", code[i]) ? code[i] : '?';
                word[i] = '\0';
                return error_set(ret_error, -EBADMSG, "IMDS %s: Code is \"%s\", not Success", origin, word);
        }
        exp = json_string(o, "Expiration");
        if (!exp || aws_parse_iso8601(exp, &expiration) < 0)
                return error_set(ret_error, -EBADMSG, "IMDS %s: missing or malformed Expiration", origin);
        if (!json_string(o, "Token"))
                return error_set(ret_error, -EBADMSG, "IMDS %s: no session Token", origin);
        r = credentials_build(json_string(o, "AccessKeyId"), json_string(o, "SecretAccessKey"), json_string(o, "Token"),
                              AWS_CRED_INSTANCE_ROLE, origin, ret, ret_error);
        if (r < 0)
                return r;
        ret->expiration = expiration;
        return 0;
}

static int load_file(const char *path, const char *profile, AwsCredSource source, AwsCredentials *ret,
                     char **ret_error) {
        _cleanup_(freep) char *text = NULL;
        int r;

        r = secret_file_read_all(path, AWS_CREDENTIALS_FILE_MAX, &text, ret_error);
        if (r < 0)
                return r;
        r = aws_credentials_parse_file(text, profile, path, ret, ret_error);
        free_wiped(text, strlen(text));
        text = NULL;
        if (r >= 0)
                ret->source = source;
        return r;
}

int aws_credentials_find_local(const char *credentials_file, const char *profile, AwsCredentials *ret,
                               char **ret_error) {
        _cleanup_(freep) char *path = NULL;
        const char *dir, *home, *file;
        int r;

        r = aws_credentials_from_vars(getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"),
                                      getenv("AWS_SESSION_TOKEN"), ret, ret_error);
        if (r != -ENOENT)
                return r;

        if (isempty(profile))
                profile = getenv("AWS_PROFILE");

        dir = getenv("CREDENTIALS_DIRECTORY");
        if (!isempty(dir)) {
                if (asprintf(&path, "%s/" SYSTEMD_CREDENTIAL_NAME, dir) < 0)
                        return -ENOMEM;
                if (access(path, F_OK) == 0) {
                        /* LoadCredential= names the file as deliberately as
                         * credentials_file: it must hold the profile */
                        r = load_file(path, profile, AWS_CRED_SYSTEMD, ret, ret_error);
                        return r == -ENOENT ? -EINVAL : r;
                }
                free(TAKE_PTR(path));
        }

        file = credentials_file;
        if (isempty(file))
                file = getenv("AWS_SHARED_CREDENTIALS_FILE");
        if (isempty(file)) {
                home = getenv("HOME");
                if (isempty(home))
                        return -ENOENT;
                if (asprintf(&path, "%s/.aws/credentials", home) < 0)
                        return -ENOMEM;
                if (access(path, F_OK) < 0)
                        return -ENOENT; /* the default file is optional */
                file = path;
        }
        r = load_file(file, profile, AWS_CRED_FILE, ret, ret_error);
        if (r == -ENOENT && file != path)
                return -EINVAL; /* a file named on purpose must hold the profile; *ret_error says so */
        if (r == -ENOENT && ret_error) {
                /* no such profile in the default file: the chain goes on */
                free(*ret_error);
                *ret_error = NULL;
        }
        return r;
}
