/*
 * The sandbox ("pause") container's process: it holds a pod's namespaces
 * open for as long as the pod lives, and does nothing else.
 *
 * It runs as PID 1 of the pod's PID namespace, which gives it two duties:
 *
 * - The kernel applies no default action to a signal sent to a namespace's
 *   init. Without this process taking SIGTERM and SIGINT itself, stopping the
 *   sandbox would wait out the runtime's timeout and end in SIGKILL. It exits
 *   0 on either.
 * - Processes of the pod orphaned by their parent are re-parented to it when
 *   the pod shares one PID namespace. It reaps them, so that they do not stay
 *   behind as zombies holding PIDs.
 *
 * The three signals are blocked and taken with sigwaitinfo() instead of by
 * handlers: a blocked signal is queued even for a namespace's init (the
 * kernel only drops signals that would take the default action), and the
 * reaping then runs as ordinary code rather than in a signal handler.
 *
 * Built static (gcc -Os -static) so that the image needs no other file.
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#define POD_ROUTER_PAUSE_VERSION  "1.0"


static void pause_reap_children(void);


int
main(int argc, char **argv)
{
    int       signo;
    sigset_t  watched;

    if (argc == 2 && strcmp(argv[1], "-v") == 0) {
        printf("pod-router pause %s\n", POD_ROUTER_PAUSE_VERSION);
        return 0;
    }

    if (argc != 1) {
        fprintf(stderr, "usage: pause [-v]\n");
        return 2;
    }

    sigemptyset(&watched);
    sigaddset(&watched, SIGCHLD);
    sigaddset(&watched, SIGINT);
    sigaddset(&watched, SIGTERM);

    if (sigprocmask(SIG_BLOCK, &watched, NULL) == -1) {
        perror("pause: sigprocmask");
        return 1;
    }

    for ( ;; ) {
        signo = sigwaitinfo(&watched, NULL);

        if (signo == -1) {
            /* a stop and continue (SIGSTOP, SIGCONT) interrupts the wait */
            if (errno == EINTR) {
                continue;
            }

            perror("pause: sigwaitinfo");
            return 1;
        }

        if (signo != SIGCHLD) {
            return 0;
        }

        pause_reap_children();
    }
}


static void
pause_reap_children(void)
{
    /*
     * SIGCHLD is not queued once per child: one signal may stand for
     * several exits, so reap until none is left.
     */
    while (waitpid(-1, NULL, WNOHANG) > 0) {
        /* void */
    }
}
