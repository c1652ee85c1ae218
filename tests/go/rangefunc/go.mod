module deferscope.test/rangefunc

go 1.23
