import time
def test_x(fresh_daemon, test_images):
    d = fresh_daemon
    d.out("load", "-i", str(test_images.busybox_docker_tar))
    t0 = time.monotonic()
    d.out("run", "-d", "--name", "sv1", "busybox", "sh", "-c", "sleep 3; exit 7")
    t1 = time.monotonic()
    d.stop()
    t2 = time.monotonic()
    d.restart()
    t3 = time.monotonic()
    print("run", t1-t0, "stop", t2-t1, "start", t3-t2)
    print(d.log_path.read_text()[-3000:])
    assert 0
