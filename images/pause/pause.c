/*
 * Minimal pod sandbox "pause" process for rkubelet's local test environment.
 *
 * - sleeps forever in pause(2)
 * - reaps zombies on SIGCHLD (it is PID 1 of the pod's PID namespace when
 *   the namespace is shared)
 * - exits 0 on SIGINT / SIGTERM
 *
 * Build: gcc -static -Os -o pause pause.c
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "rkubelet-pause 3.9"

static void on_term(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_chld(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv)
{
	struct sigaction sa;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts(VERSION);
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not running as PID 1\n");

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_term;
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
		perror("pause: sigaction(SIGINT/SIGTERM)");
		return 1;
	}

	sa.sa_handler = on_chld;
	sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	if (sigaction(SIGCHLD, &sa, NULL) < 0) {
		perror("pause: sigaction(SIGCHLD)");
		return 2;
	}

	for (;;)
		pause();

	/* not reached */
	return 42;
}
