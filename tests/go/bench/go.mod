module deferscope.test/bench

go 1.19
