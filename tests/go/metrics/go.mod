module deferscope.test/metrics

go 1.19
