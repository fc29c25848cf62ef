/*
 * settings.h — toss_billing's GUCs and the secret-key file.
 */
#ifndef TOSS_SETTINGS_H
#define TOSS_SETTINGS_H

extern char *toss_api_url;
extern int	toss_connect_timeout_ms;
extern int	toss_timeout_ms;
extern char *toss_secret_key_file;
extern char *toss_root_key_file;
extern int	toss_max_concurrency;
extern bool toss_outcome_recorder;
extern int	toss_max_requests_per_second;
extern bool toss_allow_drop;
extern int	toss_engine_workers;
extern int	toss_queue_depth;
extern int	toss_merchant_concurrency;
extern int	toss_queue_timeout_ms;
extern char *toss_report_time_zone;
extern int	toss_run_log_retention_s;

#define TOSS_MERCHANT_MAXLEN 63
#define TOSS_API_URL_MAXLEN 1024

extern void toss_define_settings(void);
extern bool toss_merchant_name_is_valid(const char *name);
extern char *toss_authorization_header(const char *merchant);
extern char *toss_api_base_url(void);
extern void toss_wipe_string(char *s);
extern const char *toss_key_file_problem(int fd);
extern char *toss_secret_key_problem(const char *merchant);

#endif
