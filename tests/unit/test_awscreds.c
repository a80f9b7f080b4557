/* The AWS credentials chain's local links and parsers: the environment
 * variables, the shared-credentials INI text, the instance role's JSON,
 * ISO 8601 expirations, copying and wiping, and the order in which
 * aws_credentials_find_local tries the environment, the systemd credential,
 * a named file and ~/.aws/credentials (in a private temporary directory,
 * with the process environment set per test and restored afterwards).
 * Throughout: no secret ever appears in an error message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "awscreds.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define TOKEN "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN+/="

/* one secret per place, so a test can tell which source won */
#define SK_ENV "envSECRETenvSECRETenvSECRETenvSECRET0001"
#define SK_SYSD "sysdSECRETsysdSECRETsysdSECRETsysdSECR02"
#define SK_FILE "fileSECRETfileSECRETfileSECRETfileSECR03"
#define SK_HOME "homeSECREThomeSECREThomeSECREThomeSECR04"
#define SK_ROLE "roleSECRETroleSECRETroleSECRETroleSECR05"
#define TOKEN_ROLE "roleTOKENroleTOKENroleTOKENroleTOKEN06"

static const char *const all_secrets[] = {
        SK, TOKEN, SK_ENV, SK_SYSD, SK_FILE, SK_HOME, SK_ROLE, TOKEN_ROLE,
};

static const char *const env_vars[] = {
        "AWS_ACCESS_KEY_ID",   "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE", "CREDENTIALS_DIRECTORY", "HOME",
};

/* --- helpers ------------------------------------------------------------ */

/* An error message: present, and without any secret. Frees it. */
static void check_error(char **error) {
        assert_non_null(*error);
        assert_true(strlen(*error) > 0);
        for (size_t i = 0; i < ELEMENTSOF(all_secrets); i++)
                if (strstr(*error, all_secrets[i]))
                        fail_msg("a secret in an error message: %s", *error);
        free(*error);
        *error = NULL;
}

/* The same, also requiring `needle` in it. */
static void check_error_has(char **error, const char *needle) {
        assert_non_null(*error);
        if (!strstr(*error, needle))
                fail_msg("error \"%s\" does not mention \"%s\"", *error, needle);
        check_error(error);
}

static bool zeroed(const AwsCredentials *c) {
        return !c->access_key && !c->secret_key && !c->session_token && c->expiration == 0 &&
               c->source == AWS_CRED_NONE && !c->origin;
}

/* A sentinel to see that outputs are not written on failure. */
static void poison(AwsCredentials *c) {
        memset(c, 0, sizeof *c);
        c->origin = (char *) "untouched";
        c->source = AWS_CRED_INSTANCE_ROLE;
        c->expiration = 42;
}

static void assert_poisoned(const AwsCredentials *c) {
        assert_ptr_equal(c->access_key, NULL);
        assert_ptr_equal(c->secret_key, NULL);
        assert_string_equal(c->origin, "untouched");
        assert_int_equal(c->expiration, 42);
}

/* --- aws_cred_source_to_string ------------------------------------------ */

static void test_source_to_string(void **state) {
        assert_string_equal(aws_cred_source_to_string(AWS_CRED_NONE), "none");
        assert_string_equal(aws_cred_source_to_string(AWS_CRED_ENVIRONMENT), "environment");
        assert_string_equal(aws_cred_source_to_string(AWS_CRED_SYSTEMD), "systemd-credentials");
        assert_string_equal(aws_cred_source_to_string(AWS_CRED_FILE), "shared-credentials-file");
        assert_string_equal(aws_cred_source_to_string(AWS_CRED_INSTANCE_ROLE), "instance-role");
        assert_null(aws_cred_source_to_string(_AWS_CRED_SOURCE_MAX));
        assert_null(aws_cred_source_to_string(_AWS_CRED_SOURCE_INVALID));
        assert_null(aws_cred_source_to_string((AwsCredSource) 1000));

        for (int i = 0; i < _AWS_CRED_SOURCE_MAX; i++)
                for (int j = 0; j < i; j++)
                        assert_string_not_equal(aws_cred_source_to_string((AwsCredSource) i),
                                                aws_cred_source_to_string((AwsCredSource) j));
}

/* --- aws_credentials_from_vars ------------------------------------------ */

static void test_vars_both(void **state) {
        AwsCredentials c = {};
        char *error = NULL;

        assert_int_equal(aws_credentials_from_vars(AK, SK, NULL, &c, &error), 0);
        assert_null(error);
        assert_string_equal(c.access_key, AK);
        assert_string_equal(c.secret_key, SK);
        assert_null(c.session_token);
        assert_int_equal(c.expiration, 0);
        assert_int_equal(c.source, AWS_CRED_ENVIRONMENT);
        assert_non_null(c.origin);
        assert_null(strstr(c.origin, SK));
        aws_credentials_done(&c);
        assert_true(zeroed(&c));

        /* an empty token is no token */
        assert_int_equal(aws_credentials_from_vars(AK, SK, "", &c, &error), 0);
        assert_null(c.session_token);
        aws_credentials_done(&c);
}

static void test_vars_with_token(void **state) {
        AwsCredentials c = {};
        char *error = NULL;

        assert_int_equal(aws_credentials_from_vars("ASIAQEXAMPLE", SK, TOKEN, &c, &error), 0);
        assert_null(error);
        assert_string_equal(c.access_key, "ASIAQEXAMPLE");
        assert_string_equal(c.secret_key, SK);
        assert_string_equal(c.session_token, TOKEN);
        assert_int_equal(c.source, AWS_CRED_ENVIRONMENT);
        assert_int_equal(c.expiration, 0);
        assert_null(strstr(c.origin, TOKEN));
        aws_credentials_done(&c);
}

static void test_vars_only_one(void **state) {
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        assert_int_equal(aws_credentials_from_vars(AK, NULL, NULL, &c, &error), -EINVAL);
        check_error_has(&error, "AWS_SECRET_ACCESS_KEY");
        assert_poisoned(&c);

        assert_int_equal(aws_credentials_from_vars(AK, "", TOKEN, &c, &error), -EINVAL);
        check_error_has(&error, "AWS_SECRET_ACCESS_KEY");

        /* the secret alone: named, never shown */
        assert_int_equal(aws_credentials_from_vars(NULL, SK, NULL, &c, &error), -EINVAL);
        check_error_has(&error, "AWS_ACCESS_KEY_ID");
        assert_int_equal(aws_credentials_from_vars("", SK, TOKEN, &c, &error), -EINVAL);
        check_error_has(&error, "AWS_ACCESS_KEY_ID");
        assert_poisoned(&c);

        /* ret_error is optional */
        assert_int_equal(aws_credentials_from_vars(AK, NULL, NULL, &c, NULL), -EINVAL);
}

static void test_vars_none(void **state) {
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        assert_int_equal(aws_credentials_from_vars(NULL, NULL, NULL, &c, &error), -ENOENT);
        assert_null(error);
        assert_int_equal(aws_credentials_from_vars("", "", NULL, &c, &error), -ENOENT);
        assert_null(error);
        /* a token alone is not credentials */
        assert_int_equal(aws_credentials_from_vars(NULL, NULL, TOKEN, &c, &error), -ENOENT);
        assert_null(error);
        assert_poisoned(&c);
}

static void test_vars_malformed(void **state) {
        static const struct {
                const char *ak, *sk, *token;
        } bad[] = {
                { "AKIA IOSFODNN7EXAMPLE", SK, NULL },
                { " " AK, SK, NULL },
                { AK "\n", SK, NULL },
                { AK, SK " ", NULL },
                { AK, "wJalrXUtnFEMI/K7MDENG\tbPxRfiCYEXAMPLEKEY", NULL },
                { AK, SK "\r\n", NULL },
                { AK, "wJalrXUtnFEMI/K7MDENG\x01" "bPxRfiCYEXAMPLEKEY", NULL },
                { AK, "wJalrXUtnFEMI/K7MDENG\x7f" "bPxRfiCYEXAMPLEKEY", NULL },
                { AK, SK, "IQoJb3JpZ2luX2Vj EXAMPLE" },
                { AK, SK, TOKEN "\n" },
                { AK, SK, " " },
                { "   ", SK, NULL },
        };
        AwsCredentials c;

        poison(&c);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *error = NULL;
                int r = aws_credentials_from_vars(bad[i].ak, bad[i].sk, bad[i].token, &c, &error);

                if (r != -EBADMSG)
                        fail_msg("case %zu: %d, expected -EBADMSG", i, r);
                check_error(&error);
                assert_poisoned(&c);
        }
}

/* --- aws_credentials_parse_file ----------------------------------------- */

static const char credentials_text[] =
        "# written by aws configure\n"
        "; another comment\n"
        "[default]\n"
        "aws_access_key_id = AKIADEFAULT0000000000\n"
        "aws_secret_access_key = " SK "\n"
        "region = us-east-1\n"
        "\n"
        "[prod]\n"
        "AWS_Access_Key_ID=AKIAPROD000000000000\n"
        "# a comment inside a profile\n"
        "Aws_Secret_Access_Key   =   " SK_FILE "\n"
        "AWS_SESSION_TOKEN = " TOKEN "\n"
        "output = json\n"
        "\n"
        "[profile staging]\n"
        "aws_access_key_id = AKIASTAGING000000000\n"
        "aws_secret_access_key = " SK_HOME "\n"
        "\n"
        "[half]\n"
        "aws_access_key_id = AKIAHALF000000000000\n"
        "[nokey]\n"
        "aws_secret_access_key = " SK_SYSD "\n";

#define ORIGIN "/etc/monkeyd/aws-credentials"

static void test_file_default(void **state) {
        AwsCredentials c = {};
        char *error = NULL;

        assert_int_equal(aws_credentials_parse_file(credentials_text, NULL, ORIGIN, &c, &error), 0);
        assert_null(error);
        assert_string_equal(c.access_key, "AKIADEFAULT0000000000");
        assert_string_equal(c.secret_key, SK);
        assert_null(c.session_token);
        assert_int_equal(c.source, AWS_CRED_FILE);
        assert_int_equal(c.expiration, 0);
        assert_string_equal(c.origin, "profile default in " ORIGIN);
        aws_credentials_done(&c);

        /* "" is the default as well */
        assert_int_equal(aws_credentials_parse_file(credentials_text, "", ORIGIN, &c, &error), 0);
        assert_string_equal(c.access_key, "AKIADEFAULT0000000000");
        aws_credentials_done(&c);

        assert_int_equal(aws_credentials_parse_file(credentials_text, "default", ORIGIN, &c, &error), 0);
        assert_string_equal(c.secret_key, SK);
        aws_credentials_done(&c);
}

static void test_file_named_profile(void **state) {
        AwsCredentials c = {};
        char *error = NULL;

        /* key names in any case, blanks around '=', region/output ignored */
        assert_int_equal(aws_credentials_parse_file(credentials_text, "prod", ORIGIN, &c, &error), 0);
        assert_null(error);
        assert_string_equal(c.access_key, "AKIAPROD000000000000");
        assert_string_equal(c.secret_key, SK_FILE);
        assert_string_equal(c.session_token, TOKEN);
        assert_int_equal(c.source, AWS_CRED_FILE);
        assert_string_equal(c.origin, "profile prod in " ORIGIN);
        aws_credentials_done(&c);
}

static void test_file_profile_prefix_form(void **state) {
        AwsCredentials c = {};
        char *error = NULL;

        assert_int_equal(aws_credentials_parse_file(credentials_text, "staging", ORIGIN, &c, &error), 0);
        assert_null(error);
        assert_string_equal(c.access_key, "AKIASTAGING000000000");
        assert_string_equal(c.secret_key, SK_HOME);
        assert_string_equal(c.origin, "profile staging in " ORIGIN);
        aws_credentials_done(&c);
}

static void test_file_profile_names_exact(void **state) {
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        /* a prefix, a different case, or "profile" itself is another profile */
        assert_int_equal(aws_credentials_parse_file(credentials_text, "pro", ORIGIN, &c, &error), -ENOENT);
        check_error(&error);
        assert_int_equal(aws_credentials_parse_file(credentials_text, "Prod", ORIGIN, &c, &error), -ENOENT);
        check_error(&error);
        assert_int_equal(aws_credentials_parse_file(credentials_text, "profile", ORIGIN, &c, &error), -ENOENT);
        check_error(&error);
        assert_poisoned(&c);
}

static void test_file_missing_profile(void **state) {
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        assert_int_equal(aws_credentials_parse_file(credentials_text, "nosuch", ORIGIN, &c, &error), -ENOENT);
        check_error_has(&error, "nosuch");
        assert_int_equal(aws_credentials_parse_file(credentials_text, "nosuch", ORIGIN, &c, &error), -ENOENT);
        check_error_has(&error, ORIGIN);

        /* an empty file has no default profile */
        assert_int_equal(aws_credentials_parse_file("", NULL, ORIGIN, &c, &error), -ENOENT);
        check_error_has(&error, "default");
        assert_int_equal(aws_credentials_parse_file("# nothing\n", NULL, ORIGIN, &c, &error), -ENOENT);
        check_error(&error);
        assert_poisoned(&c);
}

static void test_file_profile_lacks_key(void **state) {
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        /* keys of another profile do not fill in */
        assert_int_equal(aws_credentials_parse_file(credentials_text, "half", ORIGIN, &c, &error), -EBADMSG);
        check_error_has(&error, "aws_secret_access_key");
        assert_int_equal(aws_credentials_parse_file(credentials_text, "half", ORIGIN, &c, &error), -EBADMSG);
        check_error_has(&error, "half");
        assert_int_equal(aws_credentials_parse_file(credentials_text, "nokey", ORIGIN, &c, &error), -EBADMSG);
        check_error_has(&error, "aws_access_key_id");

        /* an empty value is no value */
        assert_int_equal(aws_credentials_parse_file("[default]\naws_access_key_id = " AK "\naws_secret_access_key =\n",
                                                    NULL, ORIGIN, &c, &error),
                         -EBADMSG);
        check_error(&error);
        assert_poisoned(&c);
}

static void test_file_key_twice(void **state) {
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        assert_int_equal(aws_credentials_parse_file("[default]\n"
                                                    "aws_access_key_id = " AK "\n"
                                                    "aws_secret_access_key = " SK "\n"
                                                    "aws_secret_access_key = " SK_FILE "\n",
                                                    NULL, ORIGIN, &c, &error),
                         -EBADMSG);
        check_error_has(&error, ORIGIN);

        /* also when the profile comes back later, or in the other spelling */
        assert_int_equal(aws_credentials_parse_file("[prod]\n"
                                                    "aws_access_key_id = " AK "\n"
                                                    "aws_secret_access_key = " SK "\n"
                                                    "[other]\n"
                                                    "x = y\n"
                                                    "[profile prod]\n"
                                                    "AWS_ACCESS_KEY_ID = AKIAOTHER00000000000\n",
                                                    "prod", ORIGIN, &c, &error),
                         -EBADMSG);
        check_error(&error);
        assert_poisoned(&c);
}

static void test_file_malformed_line(void **state) {
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        assert_int_equal(aws_credentials_parse_file("[default]\n"
                                                    "aws_access_key_id = " AK "\n"
                                                    "aws_secret_access_key = " SK "\n"
                                                    "this line is not ini\n",
                                                    NULL, ORIGIN, &c, &error),
                         -EBADMSG);
        check_error_has(&error, ORIGIN ":4");

        /* a pasted secret without its key: the line is reported, never echoed */
        assert_int_equal(aws_credentials_parse_file("[default]\n"
                                                    "aws_access_key_id = " AK "\n" SK "\n",
                                                    NULL, ORIGIN, &c, &error),
                         -EBADMSG);
        check_error_has(&error, ORIGIN ":3");

        /* an unclosed section header */
        assert_int_equal(aws_credentials_parse_file("[default\naws_access_key_id = " AK "\n", NULL, ORIGIN, &c, &error),
                         -EBADMSG);
        check_error_has(&error, ORIGIN ":1");

        /* a malformed line in another profile still makes the file malformed */
        assert_int_equal(aws_credentials_parse_file("[default]\n"
                                                    "aws_access_key_id = " AK "\n"
                                                    "aws_secret_access_key = " SK "\n"
                                                    "[other]\n"
                                                    "garbage\n",
                                                    NULL, ORIGIN, &c, &error),
                         -EBADMSG);
        check_error_has(&error, ORIGIN ":5");
        assert_poisoned(&c);
}

static void test_file_malformed_values(void **state) {
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        /* inside a value, a blank is not allowed */
        assert_int_equal(aws_credentials_parse_file("[default]\n"
                                                    "aws_access_key_id = AKIA IOSFODNN7EXAMPLE\n"
                                                    "aws_secret_access_key = " SK "\n",
                                                    NULL, ORIGIN, &c, &error),
                         -EBADMSG);
        check_error(&error);
        assert_int_equal(aws_credentials_parse_file("[default]\n"
                                                    "aws_access_key_id = " AK "\n"
                                                    "aws_secret_access_key = wJalrXUtnFEMI K7MDENG\n",
                                                    NULL, ORIGIN, &c, &error),
                         -EBADMSG);
        check_error(&error);
        assert_poisoned(&c);
}

static void test_file_crlf_and_bom(void **state) {
        AwsCredentials c = {};
        char *error = NULL;

        /* edited on Windows */
        assert_int_equal(aws_credentials_parse_file("\xEF\xBB\xBF[default]\r\n"
                                                    "aws_access_key_id = " AK "\r\n"
                                                    "aws_secret_access_key = " SK "\r\n"
                                                    "aws_session_token = " TOKEN "\r\n",
                                                    NULL, ORIGIN, &c, &error),
                         0);
        assert_null(error);
        assert_string_equal(c.access_key, AK);
        assert_string_equal(c.secret_key, SK);
        assert_string_equal(c.session_token, TOKEN);
        aws_credentials_done(&c);

        /* no newline at the end */
        assert_int_equal(aws_credentials_parse_file("[default]\naws_access_key_id=" AK "\naws_secret_access_key=" SK,
                                                    NULL, ORIGIN, &c, &error),
                         0);
        assert_string_equal(c.secret_key, SK);
        aws_credentials_done(&c);
}

static void test_file_long_session_token(void **state) {
        /* STS session tokens run to 1000 characters and more (SSO, assumed
         * roles); a credentials file holding one is ordinary */
        char token[1501], *text = NULL, *error = NULL;
        AwsCredentials c = {};
        int r;

        for (size_t i = 0; i < sizeof token - 1; i++)
                token[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i % 64];
        token[sizeof token - 1] = '\0';
        assert_true(asprintf(&text,
                             "[default]\n"
                             "aws_access_key_id = ASIAQEXAMPLE00000000\n"
                             "aws_secret_access_key = " SK "\n"
                             "aws_session_token = %s\n"
                             "region = us-east-1\n",
                             token) > 0);
        r = aws_credentials_parse_file(text, NULL, ORIGIN, &c, &error);
        free(text);
        if (r < 0) {
                char copy[256];

                snprintf(copy, sizeof copy, "%s", strna(error));
                free(error);
                assert_null(strstr(copy, token + 1000));
                fail_msg("a 1500-character session token: %d %s", r, copy);
        }
        assert_null(error);
        assert_string_equal(c.session_token, token);
        aws_credentials_done(&c);
}

/* --- aws_parse_iso8601 -------------------------------------------------- */

static usec_t utc(int y, int mo, int d, int h, int mi, int s) {
        struct tm tm = {
                .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s,
        };
        time_t t = timegm(&tm);

        assert_true(t > 0);
        return (usec_t) t * USEC_PER_SEC;
}

static void test_iso8601(void **state) {
        usec_t u = 0;

        assert_int_equal(aws_parse_iso8601("2026-11-22T20:00:00Z", &u), 0);
        assert_int_equal(u, utc(2026, 11, 22, 20, 0, 0));
        assert_int_equal(u, UINT64_C(1795377600) * USEC_PER_SEC);

        assert_int_equal(aws_parse_iso8601("2026-11-22T20:00:00+00:00", &u), 0);
        assert_int_equal(u, utc(2026, 11, 22, 20, 0, 0));

        assert_int_equal(aws_parse_iso8601("1970-01-01T00:00:01Z", &u), 0);
        assert_int_equal(u, USEC_PER_SEC);

        assert_int_equal(aws_parse_iso8601("2038-01-19T03:14:08Z", &u), 0); /* past 32-bit time_t */
        assert_int_equal(u, UINT64_C(2147483648) * USEC_PER_SEC);
}

static void test_iso8601_fraction(void **state) {
        const usec_t whole = utc(2026, 11, 22, 20, 13, 7);
        usec_t u = 0;

        /* the fraction may be kept or dropped, never more than that */
        assert_int_equal(aws_parse_iso8601("2026-11-22T20:13:07.123456Z", &u), 0);
        assert_true(u >= whole && u <= whole + 123456);
        assert_int_equal(aws_parse_iso8601("2026-11-22T20:13:07.9Z", &u), 0);
        assert_true(u >= whole && u <= whole + 900000);
        assert_int_equal(aws_parse_iso8601("2026-11-22T20:13:07.000Z", &u), 0);
        assert_int_equal(u, whole);
}

static void test_iso8601_leap_year(void **state) {
        usec_t u = 0;

        assert_int_equal(aws_parse_iso8601("2024-02-29T12:00:00Z", &u), 0);
        assert_int_equal(u, utc(2024, 2, 29, 12, 0, 0));
        assert_int_equal(aws_parse_iso8601("2024-03-01T00:00:00Z", &u), 0);
        assert_int_equal(u, utc(2024, 2, 29, 0, 0, 0) + 24 * 3600 * USEC_PER_SEC);
        assert_int_equal(aws_parse_iso8601("2024-12-31T23:59:59Z", &u), 0);
        assert_int_equal(u, utc(2025, 1, 1, 0, 0, 0) - USEC_PER_SEC);
}

static void test_iso8601_garbage(void **state) {
        static const char *const bad[] = {
                "",
                "garbage",
                "2026-11-22T20:00:00",        /* no zone: local time, who knows */
                "2026-11-22T20:00:00+02:00",  /* another zone */
                "2026-11-22T20:00:00-00:00x",
                "2026-11-22T20:00:00ZZ",
                "2026-11-22T20:00:00Z ",
                "2026-11-22",
                "2026-13-22T20:00:00Z",
                "2026-11-32T20:00:00Z",
                "2026-11-22T25:00:00Z",
                "2026-11-22T20:61:00Z",
                "2026-11-22 20:00:00Z",
                "1969-12-31T23:59:59Z",       /* before the epoch */
                "20261122T200000Z",
        };
        usec_t u = 4242;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (aws_parse_iso8601(bad[i], &u) >= 0)
                        fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(u, 4242);
        assert_true(aws_parse_iso8601(NULL, &u) < 0);
        assert_int_equal(u, 4242);
}

static void test_iso8601_impossible_dates(void **state) {
        /* days that do not exist must not become other days */
        static const char *const bad[] = {
                "2025-02-29T00:00:00Z", /* not a leap year: would be March 1 */
                "2100-02-29T00:00:00Z", /* not a leap year either */
                "2026-04-31T00:00:00Z", /* would be May 1 */
        };
        usec_t u = 4242;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (aws_parse_iso8601(bad[i], &u) >= 0)
                        fail_msg("accepted \"%s\" as %" PRIu64, bad[i], u);
        assert_int_equal(u, 4242);
}

/* --- aws_credentials_parse_role ----------------------------------------- */

static const char role_json[] = "{\n"
                                "  \"Code\" : \"Success\",\n"
                                "  \"LastUpdated\" : \"2026-11-22T19:47:13Z\",\n"
                                "  \"Type\" : \"AWS-HMAC\",\n"
                                "  \"AccessKeyId\" : \"ASIAROLEEXAMPLE00000\",\n"
                                "  \"SecretAccessKey\" : \"" SK_ROLE "\",\n"
                                "  \"Token\" : \"" TOKEN_ROLE "\",\n"
                                "  \"Expiration\" : \"2026-11-23T02:12:41Z\"\n"
                                "}";

static int parse_role(const char *json, AwsCredentials *c, char **error) {
        return aws_credentials_parse_role(json, strlen(json), "web-role", c, error);
}

static void test_role(void **state) {
        AwsCredentials c = {};
        char *error = NULL, *buf;
        size_t n = strlen(role_json);

        /* exactly `len` bytes, no NUL after them */
        buf = malloc(n);
        assert_non_null(buf);
        memcpy(buf, role_json, n);
        assert_int_equal(aws_credentials_parse_role(buf, n, "web-role", &c, &error), 0);
        free(buf);
        assert_null(error);
        assert_string_equal(c.access_key, "ASIAROLEEXAMPLE00000");
        assert_string_equal(c.secret_key, SK_ROLE);
        assert_string_equal(c.session_token, TOKEN_ROLE);
        assert_int_equal(c.source, AWS_CRED_INSTANCE_ROLE);
        assert_int_equal(c.expiration, utc(2026, 11, 23, 2, 12, 41));
        assert_int_equal(c.expiration, UINT64_C(1795399961000000));
        assert_string_equal(c.origin, "role web-role");
        aws_credentials_done(&c);
        assert_true(zeroed(&c));
}

static void test_role_not_success(void **state) {
        static const char json[] = "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"LastUpdated\":\"2026-11-22T19:47:13Z\","
                                   "\"AccessKeyId\":\"ASIAROLEEXAMPLE00000\",\"SecretAccessKey\":\"" SK_ROLE "\","
                                   "\"Token\":\"" TOKEN_ROLE "\",\"Expiration\":\"2026-11-23T02:12:41Z\"}";
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        assert_int_equal(parse_role(json, &c, &error), -EBADMSG);
        check_error_has(&error, "AssumeRoleUnauthorizedAccess");
        assert_poisoned(&c);
}

static void test_role_missing_token(void **state) {
        static const char json[] = "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIAROLEEXAMPLE00000\","
                                   "\"SecretAccessKey\":\"" SK_ROLE "\",\"Expiration\":\"2026-11-23T02:12:41Z\"}";
        static const char json_null[] = "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIAROLEEXAMPLE00000\","
                                        "\"SecretAccessKey\":\"" SK_ROLE "\",\"Token\":null,"
                                        "\"Expiration\":\"2026-11-23T02:12:41Z\"}";
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        assert_int_equal(parse_role(json, &c, &error), -EBADMSG);
        check_error_has(&error, "Token");
        assert_int_equal(parse_role(json_null, &c, &error), -EBADMSG);
        check_error(&error);
        assert_poisoned(&c);
}

static void test_role_missing_keys(void **state) {
        static const char *const bad[] = {
                "{\"Code\":\"Success\",\"SecretAccessKey\":\"" SK_ROLE "\",\"Token\":\"" TOKEN_ROLE "\","
                "\"Expiration\":\"2026-11-23T02:12:41Z\"}",
                "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIAROLEEXAMPLE00000\",\"Token\":\"" TOKEN_ROLE "\","
                "\"Expiration\":\"2026-11-23T02:12:41Z\"}",
                "{\"Code\":\"Success\",\"AccessKeyId\":\"\",\"SecretAccessKey\":\"" SK_ROLE "\",\"Token\":\"" TOKEN_ROLE
                "\",\"Expiration\":\"2026-11-23T02:12:41Z\"}",
                "{\"Code\":\"Success\",\"AccessKeyId\":42,\"SecretAccessKey\":\"" SK_ROLE "\",\"Token\":\"" TOKEN_ROLE
                "\",\"Expiration\":\"2026-11-23T02:12:41Z\"}",
                "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIAROLEEXAMPLE00000\",\"SecretAccessKey\":\"role secret\","
                "\"Token\":\"" TOKEN_ROLE "\",\"Expiration\":\"2026-11-23T02:12:41Z\"}",
        };
        AwsCredentials c;

        poison(&c);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *error = NULL;

                if (parse_role(bad[i], &c, &error) != -EBADMSG)
                        fail_msg("accepted %s", bad[i]);
                check_error(&error);
        }
        assert_poisoned(&c);
}

static void test_role_bad_expiration(void **state) {
        static const char *const bad[] = {
                "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIAROLEEXAMPLE00000\",\"SecretAccessKey\":\"" SK_ROLE "\","
                "\"Token\":\"" TOKEN_ROLE "\",\"Expiration\":\"tomorrow\"}",
                "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIAROLEEXAMPLE00000\",\"SecretAccessKey\":\"" SK_ROLE "\","
                "\"Token\":\"" TOKEN_ROLE "\",\"Expiration\":\"2026-11-23T02:12:41\"}",
                "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIAROLEEXAMPLE00000\",\"SecretAccessKey\":\"" SK_ROLE "\","
                "\"Token\":\"" TOKEN_ROLE "\",\"Expiration\":1795399961}",
                "{\"Code\":\"Success\",\"AccessKeyId\":\"ASIAROLEEXAMPLE00000\",\"SecretAccessKey\":\"" SK_ROLE "\","
                "\"Token\":\"" TOKEN_ROLE "\"}",
        };
        AwsCredentials c;

        poison(&c);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *error = NULL;

                if (parse_role(bad[i], &c, &error) != -EBADMSG)
                        fail_msg("accepted %s", bad[i]);
                check_error_has(&error, "Expiration");
        }
        assert_poisoned(&c);
}

static void test_role_not_json(void **state) {
        static const char *const bad[] = {
                "",
                "not json at all",
                "<html><body>404 - Not Found</body></html>",
                "[\"Code\", \"Success\"]",
                "\"Success\"",
                "null",
        };
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (parse_role(bad[i], &c, &error) != -EBADMSG)
                        fail_msg("accepted %s", bad[i]);
                check_error(&error);
        }

        /* cut anywhere: refused */
        for (size_t n = 1; n < strlen(role_json); n += 11) {
                if (aws_credentials_parse_role(role_json, n, "web-role", &c, &error) != -EBADMSG)
                        fail_msg("accepted the first %zu bytes", n);
                check_error(&error);
        }
        assert_poisoned(&c);
}

/* --- aws_credentials_copy / aws_credentials_done ------------------------ */

static void test_copy_and_done(void **state) {
        AwsCredentials a = {}, b = {}, n = {};

        assert_int_equal(parse_role(role_json, &a, NULL), 0);
        assert_int_equal(aws_credentials_copy(&a, &b), 0);
        assert_ptr_not_equal(a.access_key, b.access_key);
        assert_ptr_not_equal(a.secret_key, b.secret_key);
        assert_ptr_not_equal(a.session_token, b.session_token);
        assert_ptr_not_equal(a.origin, b.origin);
        assert_string_equal(b.access_key, a.access_key);
        assert_string_equal(b.secret_key, SK_ROLE);
        assert_string_equal(b.session_token, TOKEN_ROLE);
        assert_string_equal(b.origin, "role web-role");
        assert_int_equal(b.expiration, a.expiration);
        assert_int_equal(b.source, AWS_CRED_INSTANCE_ROLE);

        /* the copy outlives the original */
        aws_credentials_done(&a);
        assert_true(zeroed(&a));
        assert_string_equal(b.secret_key, SK_ROLE);
        aws_credentials_done(&b);
        assert_true(zeroed(&b));

        /* without a token */
        assert_int_equal(aws_credentials_from_vars(AK, SK, NULL, &a, NULL), 0);
        assert_int_equal(aws_credentials_copy(&a, &b), 0);
        assert_null(b.session_token);
        assert_string_equal(b.secret_key, SK);
        assert_int_equal(b.source, AWS_CRED_ENVIRONMENT);
        aws_credentials_done(&a);
        aws_credentials_done(&b);

        /* an empty struct copies to an empty struct */
        memset(&b, 0x5a, sizeof b);
        assert_int_equal(aws_credentials_copy(&n, &b), 0);
        assert_true(zeroed(&b));

        /* done: idempotent, takes NULL */
        aws_credentials_done(&b);
        aws_credentials_done(&b);
        assert_true(zeroed(&b));
        aws_credentials_done(NULL);
}

/* --- aws_credentials_find_local ----------------------------------------- */

typedef struct Env {
        char *saved[ELEMENTSOF(env_vars)];
        bool was_set[ELEMENTSOF(env_vars)];
        char dir[64];     /* private temporary directory */
        char home[128];   /* dir/home, empty unless a test fills it */
        char creddir[128]; /* dir/creds, for CREDENTIALS_DIRECTORY */
} Env;

static int env_setup(void **state) {
        Env *e = calloc(1, sizeof *e);

        assert_non_null(e);
        for (size_t i = 0; i < ELEMENTSOF(env_vars); i++) {
                const char *v = getenv(env_vars[i]);

                e->was_set[i] = v != NULL;
                e->saved[i] = v ? strdup(v) : NULL;
                assert_true(!v || e->saved[i]);
                assert_int_equal(unsetenv(env_vars[i]), 0);
        }
        snprintf(e->dir, sizeof e->dir, "/tmp/test-awscreds-XXXXXX");
        assert_non_null(mkdtemp(e->dir));
        snprintf(e->home, sizeof e->home, "%s/home", e->dir);
        snprintf(e->creddir, sizeof e->creddir, "%s/creds", e->dir);
        assert_int_equal(mkdir(e->home, 0700), 0);
        assert_int_equal(mkdir(e->creddir, 0700), 0);
        assert_int_equal(setenv("HOME", e->home, 1), 0);
        *state = e;
        return 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static int env_teardown(void **state) {
        Env *e = *state;

        for (size_t i = 0; i < ELEMENTSOF(env_vars); i++) {
                if (e->was_set[i])
                        setenv(env_vars[i], e->saved[i], 1);
                else
                        unsetenv(env_vars[i]);
                free(e->saved[i]);
        }
        (void) nftw(e->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
        free(e);
        return 0;
}

/* Write `path` with exactly `mode`, whatever the umask. */
static void write_file(const char *path, const char *text, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        assert_true(fd >= 0);
        assert_int_equal(fchmod(fd, mode), 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        assert_int_equal(close(fd), 0);
}

static void path_join(char *buf, size_t size, const char *a, const char *b) {
        int n = snprintf(buf, size, "%s/%s", a, b);
        assert_true(n > 0 && (size_t) n < size);
}

#define PROFILE_TEXT(name, sk) "[" name "]\naws_access_key_id = AKIAEXAMPLE000000000\naws_secret_access_key = " sk "\n"

/* Each place with its own secret, all with both [default] and [prod]. */
static void fill_systemd(Env *e, mode_t mode) {
        char p[256];
        path_join(p, sizeof p, e->creddir, "aws-credentials");
        write_file(p, PROFILE_TEXT("default", SK_SYSD) PROFILE_TEXT("prod", SK_SYSD), mode);
        assert_int_equal(setenv("CREDENTIALS_DIRECTORY", e->creddir, 1), 0);
}

static void fill_named(Env *e, char *path, size_t size, mode_t mode) {
        path_join(path, size, e->dir, "named-credentials");
        write_file(path, PROFILE_TEXT("default", SK_FILE) PROFILE_TEXT("prod", SK_FILE), mode);
}

static void fill_home(Env *e, mode_t mode) {
        char p[256];
        path_join(p, sizeof p, e->home, ".aws");
        assert_int_equal(mkdir(p, 0700), 0);
        path_join(p, sizeof p, e->home, ".aws/credentials");
        write_file(p, PROFILE_TEXT("default", SK_HOME) PROFILE_TEXT("prod", SK_HOME), mode);
}

static void set_env_keys(void) {
        assert_int_equal(setenv("AWS_ACCESS_KEY_ID", "AKIAENV0000000000000", 1), 0);
        assert_int_equal(setenv("AWS_SECRET_ACCESS_KEY", SK_ENV, 1), 0);
        assert_int_equal(setenv("AWS_SESSION_TOKEN", TOKEN, 1), 0);
}

static void test_local_nothing(void **state) {
        AwsCredentials c;
        char *error = NULL;

        poison(&c);
        assert_int_equal(aws_credentials_find_local(NULL, NULL, &c, &error), -ENOENT);
        assert_null(error);
        assert_int_equal(aws_credentials_find_local(NULL, "prod", &c, &error), -ENOENT);
        assert_null(error);

        /* a credentials directory without our credential is nothing either */
        assert_int_equal(setenv("CREDENTIALS_DIRECTORY", ((Env *) *state)->creddir, 1), 0);
        assert_int_equal(aws_credentials_find_local(NULL, NULL, &c, &error), -ENOENT);
        assert_null(error);

        /* nor is no HOME */
        assert_int_equal(unsetenv("HOME"), 0);
        assert_int_equal(aws_credentials_find_local(NULL, NULL, &c, &error), -ENOENT);
        assert_null(error);
        assert_poisoned(&c);
}

static void test_local_env_wins(void **state) {
        Env *e = *state;
        AwsCredentials c = {};
        char named[256], *error = NULL;

        fill_systemd(e, 0600);
        fill_named(e, named, sizeof named, 0600);
        fill_home(e, 0600);
        set_env_keys();

        assert_int_equal(aws_credentials_find_local(named, "prod", &c, &error), 0);
        assert_null(error);
        assert_int_equal(c.source, AWS_CRED_ENVIRONMENT);
        assert_string_equal(c.access_key, "AKIAENV0000000000000");
        assert_string_equal(c.secret_key, SK_ENV);
        assert_string_equal(c.session_token, TOKEN);
        aws_credentials_done(&c);
}

static void test_local_env_half_stops(void **state) {
        Env *e = *state;
        AwsCredentials c;
        char named[256], *error = NULL;

        /* a half-set environment is a mistake to report, not to skip */
        fill_named(e, named, sizeof named, 0600);
        assert_int_equal(setenv("AWS_SECRET_ACCESS_KEY", SK_ENV, 1), 0);
        poison(&c);
        assert_int_equal(aws_credentials_find_local(named, NULL, &c, &error), -EINVAL);
        check_error_has(&error, "AWS_ACCESS_KEY_ID");
        assert_poisoned(&c);
}

static void test_local_systemd(void **state) {
        Env *e = *state;
        AwsCredentials c = {};
        char named[256], p[256], *error = NULL;

        /* before any file, named or default */
        fill_systemd(e, 0600);
        fill_named(e, named, sizeof named, 0600);
        fill_home(e, 0600);
        path_join(p, sizeof p, e->creddir, "aws-credentials");

        assert_int_equal(aws_credentials_find_local(named, NULL, &c, &error), 0);
        assert_null(error);
        assert_int_equal(c.source, AWS_CRED_SYSTEMD);
        assert_string_equal(c.secret_key, SK_SYSD);
        assert_null(c.session_token);
        assert_non_null(strstr(c.origin, p));
        assert_non_null(strstr(c.origin, "default"));
        aws_credentials_done(&c);

        /* with a profile, named or from AWS_PROFILE */
        assert_int_equal(aws_credentials_find_local(NULL, "prod", &c, &error), 0);
        assert_int_equal(c.source, AWS_CRED_SYSTEMD);
        assert_non_null(strstr(c.origin, "prod"));
        aws_credentials_done(&c);
        assert_int_equal(setenv("AWS_PROFILE", "prod", 1), 0);
        assert_int_equal(aws_credentials_find_local(NULL, NULL, &c, &error), 0);
        assert_int_equal(c.source, AWS_CRED_SYSTEMD);
        assert_non_null(strstr(c.origin, "profile prod"));
        aws_credentials_done(&c);
}

static void test_local_systemd_too_open(void **state) {
        Env *e = *state;
        AwsCredentials c;
        char *error = NULL;

        fill_systemd(e, 0640);
        fill_home(e, 0600);
        poison(&c);
        assert_int_equal(aws_credentials_find_local(NULL, NULL, &c, &error), -EPERM);
        check_error_has(&error, "aws-credentials");
        assert_poisoned(&c);
}

static void test_local_systemd_without_profile(void **state) {
        Env *e = *state;
        AwsCredentials c;
        char p[256], *error = NULL;
        int r;

        /* LoadCredential= is as deliberate as naming a file: a missing
         * profile there is a mistake to report, not a reason to move on */
        fill_systemd(e, 0600);
        path_join(p, sizeof p, e->creddir, "aws-credentials");
        poison(&c);
        r = aws_credentials_find_local(NULL, "nosuch", &c, &error);
        if (r != -EINVAL) {
                char copy[512];

                snprintf(copy, sizeof copy, "%s", strna(error));
                free(error);
                fail_msg("a systemd credential without the profile: %d (%s), expected -EINVAL", r, copy);
        }
        check_error_has(&error, "nosuch");
        assert_poisoned(&c);
}

static void test_local_named_file(void **state) {
        Env *e = *state;
        AwsCredentials c = {};
        char named[256], *error = NULL;

        fill_named(e, named, sizeof named, 0600);
        fill_home(e, 0600);

        /* the named file, before ~/.aws/credentials */
        assert_int_equal(aws_credentials_find_local(named, "prod", &c, &error), 0);
        assert_null(error);
        assert_int_equal(c.source, AWS_CRED_FILE);
        assert_string_equal(c.secret_key, SK_FILE);
        assert_string_equal(c.access_key, "AKIAEXAMPLE000000000");
        {
                char expect[512];
                snprintf(expect, sizeof expect, "profile prod in %s", named);
                assert_string_equal(c.origin, expect);
        }
        aws_credentials_done(&c);

        /* the argument beats AWS_SHARED_CREDENTIALS_FILE */
        assert_int_equal(setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1), 0);
        assert_int_equal(aws_credentials_find_local(named, NULL, &c, &error), 0);
        assert_string_equal(c.secret_key, SK_FILE);
        assert_non_null(strstr(c.origin, "profile default"));
        aws_credentials_done(&c);

        /* which is used when there is no argument */
        assert_int_equal(setenv("AWS_SHARED_CREDENTIALS_FILE", named, 1), 0);
        assert_int_equal(aws_credentials_find_local(NULL, NULL, &c, &error), 0);
        assert_int_equal(c.source, AWS_CRED_FILE);
        assert_string_equal(c.secret_key, SK_FILE);
        aws_credentials_done(&c);

        /* the profile argument beats AWS_PROFILE */
        assert_int_equal(setenv("AWS_PROFILE", "nosuch", 1), 0);
        assert_int_equal(aws_credentials_find_local(named, "prod", &c, &error), 0);
        assert_non_null(strstr(c.origin, "profile prod"));
        aws_credentials_done(&c);
}

static void test_local_named_file_too_open(void **state) {
        Env *e = *state;
        AwsCredentials c;
        char named[256], *error = NULL;

        fill_named(e, named, sizeof named, 0640);
        fill_home(e, 0600); /* not a fallback */
        poison(&c);
        assert_int_equal(aws_credentials_find_local(named, NULL, &c, &error), -EPERM);
        check_error_has(&error, named);
        assert_poisoned(&c);
}

static void test_local_named_file_without_profile(void **state) {
        Env *e = *state;
        AwsCredentials c;
        char named[256], *error = NULL;

        fill_named(e, named, sizeof named, 0600);
        fill_home(e, 0600);
        poison(&c);
        assert_int_equal(aws_credentials_find_local(named, "staging", &c, &error), -EINVAL);
        check_error_has(&error, "staging");
        assert_int_equal(aws_credentials_find_local(named, "staging", &c, &error), -EINVAL);
        check_error_has(&error, named);

        /* same through AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE */
        assert_int_equal(setenv("AWS_SHARED_CREDENTIALS_FILE", named, 1), 0);
        assert_int_equal(setenv("AWS_PROFILE", "staging", 1), 0);
        assert_int_equal(aws_credentials_find_local(NULL, NULL, &c, &error), -EINVAL);
        check_error_has(&error, "staging");
        assert_poisoned(&c);
}

static void test_local_named_file_missing_or_bad(void **state) {
        Env *e = *state;
        AwsCredentials c;
        char p[256], *error = NULL;
        int r;

        fill_home(e, 0600);
        poison(&c);

        /* a named file that is not there is an error, not "nothing" */
        path_join(p, sizeof p, e->dir, "missing");
        r = aws_credentials_find_local(p, NULL, &c, &error);
        assert_true(r < 0 && r != -ENOENT);
        check_error_has(&error, p);

        /* malformed */
        path_join(p, sizeof p, e->dir, "malformed");
        write_file(p, "[default]\naws_access_key_id = " AK "\n" SK "\n", 0600);
        assert_int_equal(aws_credentials_find_local(p, NULL, &c, &error), -EBADMSG);
        check_error_has(&error, p);

        /* a directory */
        assert_true(aws_credentials_find_local(e->dir, NULL, &c, &error) < 0);
        check_error(&error);
        assert_poisoned(&c);
}

static void test_local_home_default(void **state) {
        Env *e = *state;
        AwsCredentials c = {};
        char p[256], *error = NULL;

        fill_home(e, 0600);
        path_join(p, sizeof p, e->home, ".aws/credentials");

        assert_int_equal(aws_credentials_find_local(NULL, NULL, &c, &error), 0);
        assert_null(error);
        assert_int_equal(c.source, AWS_CRED_FILE);
        assert_string_equal(c.secret_key, SK_HOME);
        assert_non_null(strstr(c.origin, p));
        aws_credentials_done(&c);

        assert_int_equal(setenv("AWS_PROFILE", "prod", 1), 0);
        assert_int_equal(aws_credentials_find_local(NULL, NULL, &c, &error), 0);
        assert_non_null(strstr(c.origin, "profile prod"));
        assert_string_equal(c.secret_key, SK_HOME);
        aws_credentials_done(&c);
}

static void test_local_home_without_profile(void **state) {
        Env *e = *state;
        AwsCredentials c;
        char *error = NULL;

        /* the default file is optional, and so is a profile in it: the
         * instance role is next */
        fill_home(e, 0600);
        poison(&c);
        assert_int_equal(aws_credentials_find_local(NULL, "staging", &c, &error), -ENOENT);
        assert_null(error);
        assert_poisoned(&c);
}

static void test_local_home_too_open(void **state) {
        Env *e = *state;
        AwsCredentials c;
        char *error = NULL;

        fill_home(e, 0644);
        poison(&c);
        assert_int_equal(aws_credentials_find_local(NULL, NULL, &c, &error), -EPERM);
        check_error_has(&error, ".aws/credentials");
        assert_poisoned(&c);
}

int main(void) {
#define LOCAL(t) cmocka_unit_test_setup_teardown(t, env_setup, env_teardown)
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_source_to_string),
                cmocka_unit_test(test_vars_both),
                cmocka_unit_test(test_vars_with_token),
                cmocka_unit_test(test_vars_only_one),
                cmocka_unit_test(test_vars_none),
                cmocka_unit_test(test_vars_malformed),
                cmocka_unit_test(test_file_default),
                cmocka_unit_test(test_file_named_profile),
                cmocka_unit_test(test_file_profile_prefix_form),
                cmocka_unit_test(test_file_profile_names_exact),
                cmocka_unit_test(test_file_missing_profile),
                cmocka_unit_test(test_file_profile_lacks_key),
                cmocka_unit_test(test_file_key_twice),
                cmocka_unit_test(test_file_malformed_line),
                cmocka_unit_test(test_file_malformed_values),
                cmocka_unit_test(test_file_crlf_and_bom),
                cmocka_unit_test(test_file_long_session_token),
                cmocka_unit_test(test_iso8601),
                cmocka_unit_test(test_iso8601_fraction),
                cmocka_unit_test(test_iso8601_leap_year),
                cmocka_unit_test(test_iso8601_garbage),
                cmocka_unit_test(test_iso8601_impossible_dates),
                cmocka_unit_test(test_role),
                cmocka_unit_test(test_role_not_success),
                cmocka_unit_test(test_role_missing_token),
                cmocka_unit_test(test_role_missing_keys),
                cmocka_unit_test(test_role_bad_expiration),
                cmocka_unit_test(test_role_not_json),
                cmocka_unit_test(test_copy_and_done),
                LOCAL(test_local_nothing),
                LOCAL(test_local_env_wins),
                LOCAL(test_local_env_half_stops),
                LOCAL(test_local_systemd),
                LOCAL(test_local_systemd_too_open),
                LOCAL(test_local_systemd_without_profile),
                LOCAL(test_local_named_file),
                LOCAL(test_local_named_file_too_open),
                LOCAL(test_local_named_file_without_profile),
                LOCAL(test_local_named_file_missing_or_bad),
                LOCAL(test_local_home_default),
                LOCAL(test_local_home_without_profile),
                LOCAL(test_local_home_too_open),
        };
#undef LOCAL

        return cmocka_run_group_tests(tests, NULL, NULL);
}
