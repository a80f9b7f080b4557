/* The AWS identifiers' form: regions and instance ids that must pass and
 * near misses that must not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "awsid.h"

static void test_aws_identifiers(void **state) {
        static const char *const regions_ok[] = {
                "us-east-1", "eu-central-1", "us-gov-west-1", "cn-north-1", "ap-southeast-3", "il-central-1",
                "us-isob-east-1", "ca-west-1", "eu-south-12",
        };
        static const char *const regions_bad[] = {
                "us-east1", "us-east-", "useast-1", "US-EAST-1", "us-east-1a", "us--east-1", "u-east-1",
                "us-1", "us-east-1-", "", "us east 1", "us-east-x", "usa-east-1", "us-east-1\n",
        };
        static const char *const ids_ok[] = { "i-0123456789abcdef0", "i-1234abcd", "i-00000000" };
        static const char *const ids_bad[] = {
                "0123456789", "i-0123456789", "i-0123456789ABCDEF0", "i-1234abc", "i-0123456789abcdef01",
                "I-1234abcd", "i-1234abcg", "i-", "", "i-1234abcd ",
        };

        for (size_t i = 0; i < ELEMENTSOF(regions_ok); i++)
                if (!aws_region_is_valid(regions_ok[i]))
                        fail_msg("refused region %s", regions_ok[i]);
        for (size_t i = 0; i < ELEMENTSOF(regions_bad); i++)
                if (aws_region_is_valid(regions_bad[i]))
                        fail_msg("accepted region \"%s\"", regions_bad[i]);
        assert_false(aws_region_is_valid(NULL));

        for (size_t i = 0; i < ELEMENTSOF(ids_ok); i++)
                if (!aws_instance_id_is_valid(ids_ok[i]))
                        fail_msg("refused instance id %s", ids_ok[i]);
        for (size_t i = 0; i < ELEMENTSOF(ids_bad); i++)
                if (aws_instance_id_is_valid(ids_bad[i]))
                        fail_msg("accepted instance id \"%s\"", ids_bad[i]);
        assert_false(aws_instance_id_is_valid(NULL));
}

static void test_target_group_arns(void **state) {
        static const struct {
                const char *arn, *region;
        } ok[] = {
                { "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef", "us-east-1" },
                { "arn:aws-cn:elasticloadbalancing:cn-north-1:123456789012:targetgroup/a/fedcba9876543210", "cn-north-1" },
                { "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:123456789012:targetgroup/"
                  "a2345678901234567890123456789012/0123456789abcdef",
                  "us-gov-west-1" },
                { "arn:aws:elasticloadbalancing:eu-west-3:000000000000:targetgroup/W-e-b9/0000000000000000", "eu-west-3" },
        };
        static const char *const bad[] = {
                "",
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web",
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/",
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef",
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef/x",
                "arn:aws:elasticloadbalancing:us-east-1::targetgroup/web/0123456789abcdef",
                "arn::elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef",
                "arn:AWS:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef",
                "arn:aws:elasticloadbalancingx:us-east-1:123456789012:targetgroup/web/0123456789abcdef",
                "arn:aws:elasticloadbalancing:useast1:123456789012:targetgroup/web/0123456789abcdef",
                "arn:aws:elasticloadbalancing:us-east-1:1234567890123:targetgroup/web/0123456789abcdef",
                "arn:aws:elasticloadbalancing:us-east-1:12345678901a:targetgroup/web/0123456789abcdef",
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-/0123456789abcdef",
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/w b/0123456789abcdef",
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdeg",
                " arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef",
        };
        char region[33], small[9];

        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                if (!aws_target_group_arn_parse(ok[i].arn, region, sizeof region))
                        fail_msg("refused %s", ok[i].arn);
                assert_string_equal(region, ok[i].region);
                assert_true(aws_target_group_arn_parse(ok[i].arn, NULL, 0));
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (aws_target_group_arn_parse(bad[i], NULL, 0))
                        fail_msg("accepted \"%s\"", bad[i]);
        assert_false(aws_target_group_arn_parse(NULL, NULL, 0));
        /* a region that does not fit is not cut */
        assert_false(aws_target_group_arn_parse(ok[0].arn, small, sizeof small));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_aws_identifiers),
                cmocka_unit_test(test_target_group_arns),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
